"""Replica regions in the settings: ``[replicas.NAME]`` tables.

A replica region is a second home for every object: for each primary tier
it names a tier of its own, by the same tier name, with its own URL and
storage options::

    [replicas.east.tiers.hot]
    url = "s3://dicomvault-east/hot"
    storage_options = { client_kwargs = { endpoint_url = "http://east:8333" } }

Every primary tier needs a counterpart in every region, so that each change
can be copied somewhere; a missing one is an error at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicomvault.archive.config import ConfigError, TierSettings

_REGION_KEYS = {"tiers"}
_TIER_KEYS = {"url", "storage_options"}


@dataclass(frozen=True, slots=True)
class ReplicaSettings:
    """One replica region: its name and a tier for each primary tier name."""

    name: str
    tiers: Mapping[str, TierSettings] = field(default_factory=dict)


def parse_replicas(
    table: Mapping[str, Any],
    primary: Mapping[str, TierSettings],
    data_dir: Path,
    origin: str,
) -> dict[str, ReplicaSettings]:
    """Validate the ``replicas`` table of a config file.

    Raises
    ------
    ConfigError
        A region is not a table, has unknown keys, lacks a tier the primary
        has, or a tier lacks its url.
    """
    regions: dict[str, ReplicaSettings] = {}
    for name, conf in table.items():
        if not isinstance(conf, Mapping) or not isinstance(conf.get("tiers"), Mapping):
            raise ConfigError(
                f"{origin}: replica region {name!r} needs a table "
                f"[replicas.{name}.tiers.<tier>] with a url"
            )
        if unknown := set(conf) - _REGION_KEYS:
            raise ConfigError(
                f"{origin}: replica region {name!r} has unknown keys "
                f"{sorted(unknown)}; only 'tiers' is allowed"
            )
        tiers: dict[str, TierSettings] = {}
        for tier_name, tier_conf in conf["tiers"].items():
            if not isinstance(tier_conf, Mapping) or "url" not in tier_conf:
                raise ConfigError(
                    f"{origin}: replica region {name!r} tier {tier_name!r} needs a url"
                )
            if unknown := set(tier_conf) - _TIER_KEYS:
                raise ConfigError(
                    f"{origin}: replica region {name!r} tier {tier_name!r} has "
                    f"unknown keys {sorted(unknown)}"
                )
            url = str(tier_conf["url"])
            if "://" not in url and not Path(url).is_absolute():
                url = str(data_dir / url)
            tiers[tier_name] = TierSettings(
                tier_name, url, dict(tier_conf.get("storage_options", {}))
            )
        if missing := sorted(set(primary) - set(tiers)):
            raise ConfigError(
                f"{origin}: replica region {name!r} has no tier for primary "
                f"tier(s) {missing}; add [replicas.{name}.tiers.{missing[0]}]"
            )
        regions[name] = ReplicaSettings(name, tiers)
    return regions
