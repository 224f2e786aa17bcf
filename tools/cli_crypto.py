"""``dicomvault rekey``: re-wrap a sealed tier's data keys under a new master key."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_rekey(args: argparse.Namespace) -> int:
    from dicomvault.archive.config import load_settings
    from dicomvault.tiers import open_tier
    from dicomvault.tiers.encrypted import EncryptedTier
    from dicomvault.tiers.master_keys import LocalKeyProvider

    settings = load_settings(Path(args.config) if args.config else None)
    if args.tier not in settings.tiers:
        print(f"error: no tier {args.tier!r} in the configuration")
        return 2
    conf = settings.tiers[args.tier]
    if not conf.encryption:
        print(f"error: tier {args.tier!r} has no encryption setting to rotate")
        return 2
    tier = open_tier(conf.name, conf.url, dict(conf.storage_options), conf.encryption)
    assert isinstance(tier, EncryptedTier)
    new_keys = LocalKeyProvider.from_file(args.new_key_file)
    old_id = tier.keys.key_id
    count = tier.rewrap(new_keys)
    print(
        f"re-wrapped {count} data key(s) of tier {args.tier!r} from master key "
        f"{old_id} to {new_keys.key_id}; point encryption.key_file at the new "
        "key and restart the server"
    )
    return 0


def register(subparsers: Any) -> None:
    """Add the ``rekey`` command."""
    p = subparsers.add_parser(
        "rekey", help="re-wrap a sealed tier's data keys under a new master key"
    )
    p.add_argument("--config", help="TOML settings file naming the tier")
    p.add_argument("--tier", required=True, help="the sealed tier's name")
    p.add_argument(
        "--new-key-file", required=True, help="file holding the new master key"
    )
    p.set_defaults(func=cmd_rekey)
