"""The committed gRPC stubs must match a fresh generation from the .proto files."""

from __future__ import annotations

from pathlib import Path

from dicomvault.tools.gen_proto import PROTO_DIR, generate


class TestGeneratedStubs:
    def test_committed_stubs_match_a_fresh_protoc_run(self, tmp_path: Path) -> None:
        """Regenerating the stubs changes nothing; run `make proto` if this fails."""
        fresh = generate(tmp_path)
        assert fresh, "protoc generated nothing"
        stale = [
            p.name for p in fresh if (PROTO_DIR / p.name).read_bytes() != p.read_bytes()
        ]
        assert not stale, f"stale generated stubs: {stale}; run `make proto`"

    def test_every_generated_module_is_committed(self, tmp_path: Path) -> None:
        """No generated module is missing from proto/."""
        names = {p.name for p in generate(tmp_path)}
        missing = sorted(n for n in names if not (PROTO_DIR / n).exists())
        assert not missing
