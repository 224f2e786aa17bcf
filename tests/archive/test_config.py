"""Settings: layered, validated once, errors naming the key and the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomvault.archive.config import ConfigError, load_settings


class TestSettings:
    def test_defaults_file_environment_and_flags_layer_in_order(
        self, tmp_path: Path
    ) -> None:
        """A flag beats the environment, which beats the file, which beats defaults."""
        conf = tmp_path / "dv.toml"
        conf.write_text(
            "[server]\ngrpc_port = 6000\nworkers = 3\n[sql]\nmax_rows = 10\n"
        )
        settings = load_settings(
            conf,
            {"server.grpc_port": 7000},
            environ={
                "DICOMVAULT_SERVER__GRPC_PORT": "6500",
                "DICOMVAULT_SQL__MAX_ROWS": "20",
            },
        )
        assert settings.get("server.grpc_port") == 7000
        assert settings.get("sql.max_rows") == 20
        assert settings.get("server.workers") == 3
        assert settings.get("server.grpc_host") == "127.0.0.1"

    def test_unknown_key_in_file_is_an_error(self, tmp_path: Path) -> None:
        """A misspelt setting is refused with its name."""
        conf = tmp_path / "dv.toml"
        conf.write_text("[server]\ngrpc_prot = 1\n")
        with pytest.raises(ConfigError, match="unknown setting 'server.grpc_prot'"):
            load_settings(conf, environ={})

    def test_unknown_environment_variable_is_an_error(self) -> None:
        """A DICOMVAULT_ variable that names no setting is refused."""
        with pytest.raises(
            ConfigError, match="unknown environment variable DICOMVAULT_SQL__ROWS"
        ):
            load_settings(environ={"DICOMVAULT_SQL__ROWS": "1"})

    def test_bad_value_names_key_origin_and_value(self) -> None:
        """A value of the wrong type or out of range is refused, naming its origin."""
        with pytest.raises(
            ConfigError,
            match=r"server.grpc_port from environment "
            r"DICOMVAULT_SERVER__GRPC_PORT: 'x' is not a valid int",
        ):
            load_settings(environ={"DICOMVAULT_SERVER__GRPC_PORT": "x"})
        with pytest.raises(
            ConfigError,
            match="ingest.on_conflict from command line: 'merge' "
            "must be one of reject, version",
        ):
            load_settings(None, {"ingest.on_conflict": "merge"}, environ={})

    def test_tiers_and_secrets_are_redacted(self, tmp_path: Path) -> None:
        """Tier URLs are read from the file and secrets never appear in a dump."""
        conf = tmp_path / "dv.toml"
        conf.write_text(
            '[storage]\ndefault_tier = "hot"\n'
            '[tiers.hot]\nurl = "s3://bucket/hot"\n'
            'storage_options = { key = "AKIA", secret = "s3cr3t" }\n'
        )
        settings = load_settings(conf, environ={})
        dump = settings.redacted()
        assert dump["tiers"]["hot"]["storage_options"] == {
            "key": "***",
            "secret": "***",
        }
        assert "s3cr3t" not in repr(dump)

    def test_default_tier_must_exist(self, tmp_path: Path) -> None:
        """storage.default_tier naming no configured tier is refused."""
        with pytest.raises(ConfigError, match="'glacier' is not a configured tier"):
            load_settings(None, {"storage.default_tier": "glacier"}, environ={})

    def test_settings_are_immutable(self) -> None:
        """Loaded settings cannot be changed."""
        settings = load_settings(environ={})
        with pytest.raises(TypeError):
            settings.values["server.grpc_port"] = 1  # type: ignore[index]
