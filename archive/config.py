"""Settings: one table of every setting, loaded once and then frozen.

Layers, later winning: defaults, the TOML file (``--config``), environment
variables (``DICOMVAULT_<SECTION>__<NAME>``, e.g. ``DICOMVAULT_SERVER__GRPC_PORT
=50052``), then command-line flags. Unknown keys and bad values are errors
that name the key and the value. Tiers are a table of their own::

    [tiers.hot]
    url = "file:///srv/dicomvault/hot"        # or s3://bucket/prefix
    storage_options = { }                      # passed to fsspec / s3fs
    zstd_level = 3                             # native frames only

Secrets in ``storage_options`` (``key``, ``secret``, ``token``) are redacted
by :meth:`Settings.redacted`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from dicomvault.archive.errors import InvalidInputError

ENV_PREFIX = "DICOMVAULT_"
ENV_SEPARATOR = "__"
# The embedded tiers when the configuration names none: three local folders
# under the data folder, native frames compressed harder the colder the tier.
DEFAULT_TIER_LEVELS = {"hot": 3, "warm": 9, "cold": 19}
SECRET_OPTIONS = ("key", "secret", "token", "password", "aws_secret_access_key")


class ConfigError(InvalidInputError):  # type: ignore[misc]
    """A setting is unknown or has a bad value."""


@dataclass(frozen=True, slots=True)
class Spec:
    """One setting: its dotted key, type, default and meaning."""

    key: str
    type: type
    default: Any
    doc: str
    check: Callable[[Any], str | None] | None = None

    @property
    def env(self) -> str:
        section, name = self.key.split(".")
        return f"{ENV_PREFIX}{section.upper()}{ENV_SEPARATOR}{name.upper()}"


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _port(value: Any) -> str | None:
    return None if 0 <= value <= 65535 else "must be a port number 0-65535"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


SPECS: tuple[Spec, ...] = (
    Spec(
        "server.data_dir",
        str,
        "data",
        "Folder for the index, spool and (by default) the tiers. Example: "
        '`data_dir = "/srv/dicomvault"`.',
    ),
    Spec(
        "server.grpc_host",
        str,
        "127.0.0.1",
        'Address the gRPC server binds to. Example: `grpc_host = "0.0.0.0"`.',
    ),
    Spec("server.grpc_port", int, 50051, "gRPC port; 0 picks a free one.", _port),
    Spec(
        "server.workers",
        int,
        16,
        "Threads serving gRPC requests at once. Example: `workers = 32`.",
        _positive,
    ),
    Spec(
        "server.log_level",
        str,
        "INFO",
        "DEBUG, INFO, WARNING or ERROR.",
        _one_of("DEBUG", "INFO", "WARNING", "ERROR"),
    ),
    Spec(
        "storage.default_tier",
        str,
        "hot",
        'Tier that receives new instances. Example: `default_tier = "hot"`.',
    ),
    Spec(
        "storage.shard_bytes",
        int,
        32 << 20,
        "Target size of one Zarr shard of frames (uncompressed). Larger "
        "shards mean fewer objects; a frame is always one ranged read.",
        _positive,
    ),
    Spec(
        "ingest.on_conflict",
        str,
        "reject",
        "What to do when a SOP Instance UID arrives again with different "
        "bytes: `reject` it with a reason, or keep it as a new `version` "
        "beside the old one. Identical bytes are always a duplicate.",
        _one_of("reject", "version"),
    ),
    Spec(
        "ingest.max_instance_bytes",
        int,
        64 << 30,
        "Largest instance accepted, in bytes. Example: `max_instance_bytes = "
        "10737418240` (10 GiB).",
        _positive,
    ),
    Spec(
        "ingest.chunk_bytes",
        int,
        1 << 20,
        "Size of the chunks the server streams on retrieval.",
        _positive,
    ),
    Spec(
        "sql.max_rows",
        int,
        1_000_000,
        "Most rows one SQL query may return before it is refused.",
        _positive,
    ),
    Spec(
        "sql.timeout_seconds",
        float,
        30.0,
        "Longest a SQL query may run before it is interrupted.",
        _positive,
    ),
    Spec("sql.batch_rows", int, 1000, "Rows per streamed SQL batch.", _positive),
    Spec(
        "debug.pause_move_at",
        str,
        "",
        "For crash tests only: a study move stops for good at this named step "
        "(`copying`, `copied`, `switched`, `deleting`) after logging "
        "`event=move.paused`, so a test can kill the server there. Empty (the "
        'default) never pauses. Example: `pause_move_at = "switched"`.',
        _one_of("", "copying", "copied", "switched", "deleting"),
    ),
    Spec(
        "lifecycle.max_share",
        float,
        0.10,
        "The guard: a lifecycle run that would move more than this share of "
        "the archive's bytes stops, says what it would have done, and waits for "
        "an explicit confirmation (`dicomvault tier apply --confirm`). It "
        "cannot be switched off; 1.0 allows anything up to the whole archive. "
        "Example: `max_share = 0.05`.",
        lambda v: None if 0 < v <= 1 else "must be above 0 and at most 1",
    ),
    Spec(
        "lifecycle.interval_seconds",
        float,
        0.0,
        "How often the server's scheduler applies the lifecycle rules; 0 (the "
        "default) runs them only on request. A scheduled run never confirms: "
        "it stops at the guard. Example: `interval_seconds = 3600`.",
        lambda v: None if v >= 0 else "must be 0 or more",
    ),
    Spec(
        "retention.grace_days",
        float,
        30.0,
        "Days between marking an instance deleted (invisible at once) and the "
        "purge that removes its objects from every tier; until then it can be "
        "restored. Example: `grace_days = 7`.",
        lambda v: None if v >= 0 else "must be 0 or more",
    ),
    Spec(
        "lifecycle.promote_from",
        str,
        "",
        "Comma-separated tiers whose reads move the study back to "
        "`lifecycle.promote_to` in the background; empty (the default) "
        'promotes nothing. Example: `promote_from = "cold"`.',
    ),
    Spec(
        "lifecycle.promote_to",
        str,
        "hot",
        "The tier promoted and prefetched studies go to. Example: "
        '`promote_to = "hot"`.',
    ),
    Spec(
        "lifecycle.prefetch_priors",
        int,
        0,
        "When a study is read, warm this many earlier studies of the same "
        "patient (by StudyDate) to `lifecycle.promote_to` in the background; "
        "0 (the default) prefetches nothing. Example: `prefetch_priors = 2`.",
        lambda v: None if v >= 0 else "must be 0 or more",
    ),
)
SPEC_BY_KEY: Mapping[str, Spec] = MappingProxyType({s.key: s for s in SPECS})


@dataclass(frozen=True, slots=True)
class TierSettings:
    """One configured tier."""

    name: str
    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict)
    zstd_level: int = 3


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting, validated and immutable. Read with :meth:`get`."""

    values: Mapping[str, Any]
    tiers: Mapping[str, TierSettings]
    source: str = "defaults"

    def get(self, key: str) -> Any:
        """The value of a dotted setting key such as ``server.grpc_port``."""
        return self.values[key]

    @property
    def data_dir(self) -> Path:
        return Path(self.values["server.data_dir"]).resolve()

    def redacted(self) -> dict[str, Any]:
        """All settings as a dict, with secrets replaced by ``***``."""
        tiers = {
            name: {
                "url": t.url,
                "zstd_level": t.zstd_level,
                "storage_options": {
                    k: ("***" if k in SECRET_OPTIONS else v)
                    for k, v in t.storage_options.items()
                },
            }
            for name, t in self.tiers.items()
        }
        return {**self.values, "tiers": tiers}


def _coerce(spec: Spec, value: Any, origin: str) -> Any:
    try:
        if spec.type is bool and isinstance(value, str):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(value)
            coerced: Any = value.lower() in ("1", "true", "yes")
        elif spec.type is int and isinstance(value, bool):
            raise ValueError(value)
        else:
            coerced = spec.type(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"setting {spec.key} from {origin}: {value!r} is not a valid "
            f"{spec.type.__name__}"
        ) from None
    if spec.check is not None and (problem := spec.check(coerced)):
        raise ConfigError(f"setting {spec.key} from {origin}: {coerced!r} {problem}")
    return coerced


def _flatten(table: Mapping[str, Any], origin: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, content in table.items():
        if section == "tiers":
            continue
        if not isinstance(content, Mapping):
            raise ConfigError(f"{origin}: top-level key {section!r} must be a table")
        for name, value in content.items():
            key = f"{section}.{name}"
            if key not in SPEC_BY_KEY:
                raise ConfigError(f"{origin}: unknown setting {key!r}")
            flat[key] = value
    return flat


def _tiers(
    table: Mapping[str, Any], data_dir: Path, origin: str
) -> dict[str, TierSettings]:
    tiers: dict[str, TierSettings] = {}
    for name, conf in table.items():
        if not isinstance(conf, Mapping) or "url" not in conf:
            raise ConfigError(f"{origin}: tier {name!r} needs a table with a url")
        unknown = set(conf) - {"url", "storage_options", "zstd_level"}
        if unknown:
            raise ConfigError(
                f"{origin}: tier {name!r} has unknown keys {sorted(unknown)}"
            )
        level = conf.get("zstd_level", 3)
        if not isinstance(level, int) or not 1 <= level <= 22:
            raise ConfigError(
                f"{origin}: tier {name!r} zstd_level {level!r} must be 1-22"
            )
        url = str(conf["url"])
        if "://" not in url and not Path(url).is_absolute():
            url = str(data_dir / url)
        tiers[name] = TierSettings(
            name, url, dict(conf.get("storage_options", {})), level
        )
    return tiers


def load_settings(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Load and validate settings from every layer.

    Parameters
    ----------
    config_file
        A TOML file, or None.
    overrides
        Dotted keys from command-line flags; ``None`` values are ignored.
    environ
        The environment to read (defaults to ``os.environ``).

    Raises
    ------
    ConfigError
        On an unknown key, a bad value or an unreadable file.
    """
    environ = os.environ if environ is None else environ
    raw: dict[str, tuple[Any, str]] = {s.key: (s.default, "defaults") for s in SPECS}
    tier_table: Mapping[str, Any] = {}
    sources = ["defaults"]

    if config_file is not None:
        try:
            table = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"cannot read config file {config_file}: {err}") from None
        for key, value in _flatten(table, str(config_file)).items():
            raw[key] = (value, str(config_file))
        tier_table = table.get("tiers", {})
        sources.append(str(config_file))

    env_names = {s.env: s for s in SPECS}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        if name not in env_names:
            raise ConfigError(
                f"unknown environment variable {name}; "
                f"known: {', '.join(sorted(env_names))}"
            )
        raw[env_names[name].key] = (value, f"environment {name}")

    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in SPEC_BY_KEY:
            raise ConfigError(f"unknown setting {key!r}")
        raw[key] = (value, "command line")

    values = {k: _coerce(SPEC_BY_KEY[k], v, origin) for k, (v, origin) in raw.items()}
    data_dir = Path(values["server.data_dir"]).resolve()
    tiers = _tiers(tier_table, data_dir, str(config_file)) if tier_table else {}
    if not tiers:
        tiers = {
            name: TierSettings(name, str(data_dir / "tiers" / name), {}, level)
            for name, level in DEFAULT_TIER_LEVELS.items()
        }
    for key in ("lifecycle.promote_to", "lifecycle.promote_from"):
        for name in filter(None, values[key].split(",")):
            if name.strip() not in tiers:
                raise ConfigError(
                    f"setting {key}: {name.strip()!r} is not a configured tier "
                    f"({', '.join(tiers)})"
                )
    if values["storage.default_tier"] not in tiers:
        raise ConfigError(
            f"setting storage.default_tier: {values['storage.default_tier']!r} is not "
            f"a configured tier ({', '.join(tiers)})"
        )
    return Settings(
        MappingProxyType(values), MappingProxyType(tiers), ", ".join(sources)
    )
