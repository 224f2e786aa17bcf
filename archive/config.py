"""Settings: one table of every setting, loaded once and then frozen.

Layers, later winning: defaults, the TOML file (``--config``), environment
variables (``DICOMVAULT_<SECTION>__<NAME>``, e.g. ``DICOMVAULT_SERVER__GRPC_PORT
=50052``), then command-line flags. Unknown keys and bad values are errors
that name the key and the value. Tiers are a table of their own::

    [tiers.hot]
    url = "file:///srv/dicomvault/hot"        # or s3://bucket/prefix
    storage_options = { }                      # passed to fsspec / s3fs
    zstd_level = 3                             # native frames only
    encryption = { key_file = "/etc/dicomvault/hot.key" }  # or key_env = "NAME"

Secrets in ``storage_options`` (``key``, ``secret``, ``token``) are redacted
by :meth:`Settings.redacted`.
"""

from __future__ import annotations

import ipaddress
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
        16 << 20,
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
        "security.auth",
        str,
        "none",
        "How callers prove who they are: `jwt` (bearer tokens signed with "
        "`security.jwt_key_file`) or `none` (every caller has every role; "
        "allowed only when `server.grpc_host` is a loopback address). "
        'Example: `auth = "jwt"`.',
        _one_of("none", "jwt"),
    ),
    Spec(
        "security.jwt_algorithm",
        str,
        "HS256",
        "Signature algorithm of bearer tokens: HS256 (shared secret), RS256 or "
        'ES256 (public key). Example: `jwt_algorithm = "ES256"`.',
        _one_of("HS256", "RS256", "ES256"),
    ),
    Spec(
        "security.jwt_key_file",
        str,
        "",
        "File with the HS256 secret, or the PEM public key for RS256/ES256. "
        'Example: `jwt_key_file = "/etc/dicomvault/jwt.pub"`.',
    ),
    Spec(
        "security.jwt_issuer",
        str,
        "",
        "Required `iss` claim of tokens; empty to not check. "
        'Example: `jwt_issuer = "https://login.example.org"`.',
    ),
    Spec(
        "security.jwt_audience",
        str,
        "",
        "Required `aud` claim of tokens; empty to not check. "
        'Example: `jwt_audience = "dicomvault"`.',
    ),
    Spec(
        "security.tls_cert_file",
        str,
        "",
        "PEM certificate chain of the server; with `tls_key_file` it turns on "
        'TLS for gRPC. Example: `tls_cert_file = "/etc/dicomvault/server.crt"`.',
    ),
    Spec(
        "security.tls_key_file",
        str,
        "",
        "PEM private key of `tls_cert_file`. "
        'Example: `tls_key_file = "/etc/dicomvault/server.key"`.',
    ),
    Spec(
        "security.tls_client_ca_file",
        str,
        "",
        "PEM certificates of the CAs that sign client certificates; when set, "
        "mutual TLS is required and a client without a certificate is refused "
        'at the handshake. Example: `tls_client_ca_file = "/etc/dicomvault/ca.crt"`.',
    ),
    Spec(
        "http.host",
        str,
        "127.0.0.1",
        'Address the DICOMweb server binds to. Example: `host = "0.0.0.0"`.',
    ),
    Spec(
        "http.port",
        int,
        8080,
        "DICOMweb (HTTP) port; 0 picks a free one. Example: `port = 8042`.",
        _port,
    ),
    Spec(
        "http.base_path",
        str,
        "/dicomweb",
        "Path under which STOW-RS, QIDO-RS and WADO-RS answer. Example: "
        '`base_path = "/dicom-web"` serves `/dicom-web/studies`.',
        lambda v: None if v.startswith("/") else "must start with /",
    ),
    Spec(
        "http.cors_origins",
        str,
        "",
        "Comma-separated origins a browser viewer may call from (CORS); empty "
        'allows none, `*` allows any. Example: `cors_origins = "https://viewer.'
        'example.org"`.',
    ),
    Spec(
        "http.max_request_bytes",
        int,
        4 << 30,
        "Largest STOW-RS request body, in bytes; a larger one is answered 413. "
        "Example: `max_request_bytes = 1073741824` (1 GiB).",
    ),
    Spec(
        "ingest.max_upload_bytes",
        int,
        64 << 30,
        "Most bytes one Store stream may carry, over all its instances; the "
        "stream is cut off past it. Example: `max_upload_bytes = 21474836480` "
        "(20 GiB).",
        _positive,
    ),
    Spec(
        "ingest.max_sequence_depth",
        int,
        16,
        "Deepest nesting of sequences (SQ) accepted in an instance's header; "
        "real instances rarely pass 5. Example: `max_sequence_depth = 8`.",
        _positive,
    ),
    Spec(
        "ingest.max_element_bytes",
        int,
        64 << 20,
        "Longest single header element accepted, in bytes (the pixel data is "
        "bounded by max_instance_bytes instead). Example: "
        "`max_element_bytes = 1048576` (1 MiB).",
        _positive,
    ),
    Spec(
        "replication.poll_seconds",
        float,
        0.2,
        "How often the replicator and WatchChanges look for new changes in "
        "the change log. Example: `poll_seconds = 0.5`.",
        _positive,
    ),
    Spec(
        "replication.retry_max_seconds",
        float,
        30.0,
        "Longest wait between two attempts to reach a replica region that "
        "is down; the wait doubles from 0.25 s up to this cap. Example: "
        "`retry_max_seconds = 60`.",
        _positive,
    ),
    Spec(
        "replication.failover_reads",
        bool,
        False,
        "Beta. When a primary tier does not answer, read the object from the "
        "first replica region that has it (one WARNING line per fallback). "
        "Example: `failover_reads = true`.",
    ),
    Spec(
        "replication.scrub_interval_seconds",
        float,
        0.0,
        "Seconds between scheduled scrubs (verify, then repair corrupt or "
        "missing objects from a replica region); 0 turns the scrub off. "
        "Example: `scrub_interval_seconds = 86400`.",
        lambda v: None if v >= 0 else "must be 0 (off) or more",
    ),
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
    encryption: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting, validated and immutable. Read with :meth:`get`."""

    values: Mapping[str, Any]
    tiers: Mapping[str, TierSettings]
    source: str = "defaults"
    replicas: Mapping[str, Any] = field(default_factory=dict)

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
                "encryption": dict(t.encryption),
                "storage_options": {
                    k: ("***" if k in SECRET_OPTIONS else v)
                    for k, v in t.storage_options.items()
                },
            }
            for name, t in self.tiers.items()
        }
        replicas = {
            name: {
                t.name: {"url": t.url, "storage_options": _redact(t.storage_options)}
                for t in region.tiers.values()
            }
            for name, region in self.replicas.items()
        }
        return {**self.values, "tiers": tiers, "replicas": replicas}


def _redact(options: Mapping[str, Any]) -> dict[str, Any]:
    return {k: ("***" if k in SECRET_OPTIONS else v) for k, v in options.items()}


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
        if section in ("tiers", "replicas"):
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
        unknown = set(conf) - {"url", "storage_options", "zstd_level", "encryption"}
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
            name,
            url,
            dict(conf.get("storage_options", {})),
            level,
            _encryption(conf.get("encryption", {}), name, origin),
        )
    return tiers


def _encryption(conf: Any, name: str, origin: str) -> dict[str, str]:
    """Check a tier's ``encryption`` table: exactly one of key_file, key_env."""
    if not isinstance(conf, Mapping) or (
        conf and (len(conf) != 1 or not set(conf) <= {"key_file", "key_env"})
    ):
        raise ConfigError(
            f"{origin}: tier {name!r} encryption {conf!r} must be a table with "
            'exactly one of key_file = "path" or key_env = "VARIABLE"'
        )
    return {k: str(v) for k, v in conf.items()}


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
    replica_table: Mapping[str, Any] = {}
    sources = ["defaults"]

    if config_file is not None:
        try:
            table = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"cannot read config file {config_file}: {err}") from None
        for key, value in _flatten(table, str(config_file)).items():
            raw[key] = (value, str(config_file))
        tier_table = table.get("tiers", {})
        replica_table = table.get("replicas", {})
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
    check_security(values)
    from dicomvault.archive.replica_config import parse_replicas

    replicas = parse_replicas(replica_table, tiers, data_dir, str(config_file))
    return Settings(
        MappingProxyType(values),
        MappingProxyType(tiers),
        ", ".join(sources),
        MappingProxyType(replicas),
    )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_security(values: Mapping[str, Any]) -> None:
    """Validate the ``security.*`` settings together with the bind address.

    Raises
    ------
    ConfigError
        A key file is missing, TLS is half configured, or the server would
        listen on a non-loopback address without authentication.
    """
    files = (
        "security.jwt_key_file",
        "security.tls_cert_file",
        "security.tls_key_file",
        "security.tls_client_ca_file",
    )
    for key in files:
        if values[key] and not Path(values[key]).is_file():
            raise ConfigError(f"setting {key}: {values[key]!r} is not a readable file")
    if values["security.auth"] == "jwt" and not values["security.jwt_key_file"]:
        raise ConfigError(
            "setting security.auth is 'jwt' but security.jwt_key_file is empty; "
            "set it to the HS256 secret or the RS256/ES256 public key file"
        )
    if bool(values["security.tls_cert_file"]) != bool(values["security.tls_key_file"]):
        raise ConfigError(
            "settings security.tls_cert_file and security.tls_key_file must be "
            "set together (found only one of them)"
        )
    if values["security.tls_client_ca_file"] and not values["security.tls_cert_file"]:
        raise ConfigError(
            "setting security.tls_client_ca_file needs TLS: also set "
            "security.tls_cert_file and security.tls_key_file"
        )
    for host in (values["server.grpc_host"], values.get("http.host", "127.0.0.1")):
        if values["security.auth"] == "none" and not is_loopback(host):
            _refuse_open(host)


def _refuse_open(host: str) -> None:
    raise ConfigError(
        f"refusing to serve on {host}, which is not a loopback address, "
        "without authentication (security.auth is 'none'): anyone who can "
        "reach the port could read every instance; set security.auth = 'jwt' "
        "and security.jwt_key_file, or bind to 127.0.0.1"
    )
