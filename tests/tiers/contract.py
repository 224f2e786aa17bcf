"""The one contract every tier backend passes.

Each backend's test module subclasses :class:`TierContract` and provides three
fixtures:

- ``tier``: an empty tier of that backend, used by one test only;
- ``storage_options``: what :func:`open_tier` needs to reach the same place;
- ``corrupt``: a function ``corrupt(key, offset)`` that flips one byte of a
  stored object behind the tier's back (on disk, or straight through S3).

The class name lacks the ``Test`` prefix, so pytest collects it only through
its subclasses.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from zarr.codecs import ZstdCodec
from zarr.storage import LocalStore

from dicomvault.tiers import (
    InvalidKeyError,
    ObjectExistsError,
    ObjectKey,
    ObjectNotFoundError,
    Tier,
    TierIntegrityError,
    open_tier,
)
from dicomvault.tiers.base import read_all

Corrupt = Callable[[ObjectKey, int], None]

DATA = bytes(range(256)) * 40 + b"tail"
ABSENT = ObjectKey("studies/1.2.3/absent.bin")
UNSAFE_KEYS = [
    pytest.param("../x", id="parent"),
    pytest.param("/abs", id="absolute"),
    pytest.param("a/../../b", id="parent-inside"),
    pytest.param("a/b\x00c", id="nul"),
    pytest.param("a//b", id="empty-component"),
    pytest.param("a/b/", id="trailing-slash"),
]


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def key(text: str) -> ObjectKey:
    """An object key from a literal (the tests' keys are all safe)."""
    return ObjectKey(text)


def not_found(k: str) -> str:
    """The start of the not-found message for ``k``, as a regex."""
    return re.escape(f"object {k!r} not found")


def refused_overwrite(k: str) -> str:
    """The overwrite-refusal message for ``k``, as a regex."""
    return re.escape(f"object {k!r} already exists; refusing to overwrite")


class TierContract:
    """Behaviour every :class:`~dicomvault.tiers.Tier` backend must show."""

    # -- round trip --

    def test_put_bytes_round_trips_and_reports_size_and_sha256(
        self, tier: Tier
    ) -> None:
        """put_bytes stores the bytes and reports their size and checksum."""
        k = key("studies/1.2.3/1.2.4/1.2.5/v1/envelope.bin")

        info = tier.put_bytes(k, DATA, sha256=sha256(DATA))

        assert (info.key, info.size, info.sha256) == (k, len(DATA), sha256(DATA))
        assert tier.read_bytes(k) == DATA
        assert tier.size(k) == len(DATA)
        assert tier.exists(k)

    def test_put_file_round_trips_and_keeps_the_source(
        self, tier: Tier, tmp_path: Path
    ) -> None:
        """put_file without move stores a copy and leaves the source alone."""
        source = tmp_path / "source.bin"
        source.write_bytes(DATA)
        k = key("studies/1.2.3/frames/c/0/0/0")

        info = tier.put_file(k, source, sha256=sha256(DATA))

        assert (info.size, info.sha256) == (len(DATA), sha256(DATA))
        assert tier.read_bytes(k) == DATA
        assert source.read_bytes() == DATA

    def test_put_file_with_move_stores_the_source_bytes(
        self, tier: Tier, tmp_path: Path
    ) -> None:
        """put_file with move stores the source's bytes (the source may go)."""
        source = tmp_path / "source.bin"
        source.write_bytes(DATA)
        k = key("moved/object.bin")

        tier.put_file(k, source, sha256=sha256(DATA), move=True)

        assert tier.read_bytes(k) == DATA

    def test_failed_move_keeps_the_source(self, tier: Tier, tmp_path: Path) -> None:
        """A move whose verification fails stores nothing and keeps the source."""
        source = tmp_path / "source.bin"
        source.write_bytes(DATA)
        k = key("moved/bad.bin")

        with pytest.raises(TierIntegrityError):
            tier.put_file(k, source, sha256=sha256(b"other"), move=True)

        assert not tier.exists(k)
        assert source.read_bytes() == DATA

    def test_empty_object_round_trips(self, tier: Tier) -> None:
        """A zero-byte object is stored and read back as zero bytes."""
        k = key("empty.bin")

        info = tier.put_bytes(k, b"", sha256=sha256(b""))

        assert info.size == 0
        assert tier.read_bytes(k) == b""
        assert tier.read_range(k, 0, 10) == b""

    def test_open_read_streams_the_whole_object(self, tier: Tier) -> None:
        """open_read yields the stored bytes in order, in chunks."""
        k = key("stream.bin")
        tier.put_bytes(k, DATA, sha256=sha256(DATA))

        with tier.open_read(k) as stream:
            chunks = list(read_all(stream, chunk_size=1000))

        assert b"".join(chunks) == DATA
        assert len(chunks) == -(-len(DATA) // 1000)

    # -- ranges --

    def test_read_range_in_the_middle_returns_exactly_those_bytes(
        self, tier: Tier
    ) -> None:
        """read_range returns ``length`` bytes from ``start``."""
        k = key("range.bin")
        tier.put_bytes(k, DATA, sha256=sha256(DATA))

        assert tier.read_range(k, 1000, 300) == DATA[1000:1300]

    def test_read_range_ending_at_the_end_returns_the_last_bytes(
        self, tier: Tier
    ) -> None:
        """A range that ends exactly at the object's end is complete."""
        k = key("range.bin")
        tier.put_bytes(k, DATA, sha256=sha256(DATA))

        assert tier.read_range(k, len(DATA) - 4, 4) == b"tail"

    def test_read_range_past_the_end_is_short(self, tier: Tier) -> None:
        """A range running past the end is cut short there, not an error."""
        k = key("range.bin")
        tier.put_bytes(k, DATA, sha256=sha256(DATA))

        assert tier.read_range(k, len(DATA) - 2, 100) == b"il"
        assert tier.read_range(k, len(DATA), 100) == b""
        assert tier.read_range(k, len(DATA) + 50, 100) == b""

    # -- absent keys --

    @pytest.mark.parametrize("method", ["open_read", "read_bytes", "size"])
    def test_absent_key_raises_object_not_found(self, tier: Tier, method: str) -> None:
        """Reading an absent key raises ObjectNotFoundError, naming the key."""
        with pytest.raises(ObjectNotFoundError, match=not_found(ABSENT)):
            getattr(tier, method)(ABSENT)

    def test_absent_key_range_read_raises_object_not_found(self, tier: Tier) -> None:
        """A range read of an absent key raises ObjectNotFoundError."""
        with pytest.raises(ObjectNotFoundError, match=not_found(ABSENT)):
            tier.read_range(ABSENT, 0, 10)

    def test_absent_key_does_not_exist(self, tier: Tier) -> None:
        """exists is False for an absent key."""
        assert not tier.exists(ABSENT)

    def test_not_found_is_also_a_file_not_found_error(self, tier: Tier) -> None:
        """Callers may catch the built-in FileNotFoundError as well."""
        with pytest.raises(FileNotFoundError):
            tier.read_bytes(ABSENT)

    def test_folder_of_other_keys_is_not_an_object(self, tier: Tier) -> None:
        """A prefix that only holds other keys is not itself an object."""
        tier.put_bytes(key("a/b/c"), DATA, sha256=sha256(DATA))

        assert not tier.exists(key("a/b"))
        with pytest.raises(ObjectNotFoundError, match=not_found("a/b")):
            tier.read_bytes(key("a/b"))

    # -- no overwrite --

    def test_put_bytes_over_existing_key_is_refused_and_changes_nothing(
        self, tier: Tier
    ) -> None:
        """put_bytes to a taken key raises ObjectExistsError; the old bytes stay."""
        k = key("once.bin")
        tier.put_bytes(k, DATA, sha256=sha256(DATA))

        with pytest.raises(ObjectExistsError, match=refused_overwrite(k)):
            tier.put_bytes(k, b"new", sha256=sha256(b"new"))

        assert tier.read_bytes(k) == DATA

    def test_put_file_over_existing_key_is_refused_and_changes_nothing(
        self, tier: Tier, tmp_path: Path
    ) -> None:
        """put_file to a taken key raises ObjectExistsError; the old bytes stay."""
        k = key("once.bin")
        tier.put_bytes(k, DATA, sha256=sha256(DATA))
        source = tmp_path / "new.bin"
        source.write_bytes(b"new")

        with pytest.raises(ObjectExistsError, match=refused_overwrite(k)):
            tier.put_file(k, source, sha256=sha256(b"new"), move=True)

        assert tier.read_bytes(k) == DATA
        assert source.read_bytes() == b"new"

    # -- integrity at write time --

    def test_put_bytes_with_wrong_sha256_raises_and_leaves_nothing(
        self, tier: Tier
    ) -> None:
        """A checksum mismatch after put_bytes is an integrity error, undone."""
        k = key("bad.bin")
        wrong = sha256(b"something else")

        message = (
            f"object {k!r} in tier {tier.name!r} read back with sha256 "
            f"{sha256(DATA)}, expected {wrong}; the write was undone"
        )
        with pytest.raises(TierIntegrityError, match=re.escape(message)):
            tier.put_bytes(k, DATA, sha256=wrong)

        assert not tier.exists(k)
        assert list(tier.list()) == []

    def test_put_file_with_wrong_sha256_raises_and_leaves_nothing(
        self, tier: Tier, tmp_path: Path
    ) -> None:
        """A checksum mismatch after put_file is an integrity error, undone."""
        source = tmp_path / "source.bin"
        source.write_bytes(DATA)
        k = key("bad.bin")
        wrong = sha256(b"something else")

        with pytest.raises(TierIntegrityError, match=re.escape(f"expected {wrong}")):
            tier.put_file(k, source, sha256=wrong)

        assert not tier.exists(k)
        assert list(tier.list()) == []

    # -- listing --

    def test_list_under_prefix_yields_exactly_the_keys_below_it(
        self, tier: Tier
    ) -> None:
        """list(prefix) is recursive and stops at the folder boundary."""
        keys = ["a/x", "a/b/y", "a/b/c/z", "ab/z", "b/q", "top"]
        for k in keys:
            tier.put_bytes(key(k), k.encode(), sha256=sha256(k.encode()))

        assert set(tier.list()) == set(keys)
        assert set(tier.list("a")) == {"a/x", "a/b/y", "a/b/c/z"}
        assert set(tier.list("a/")) == {"a/x", "a/b/y", "a/b/c/z"}
        assert set(tier.list("a/b")) == {"a/b/y", "a/b/c/z"}
        assert set(tier.list("nothing/here")) == set()

    def test_list_of_an_empty_tier_is_empty(self, tier: Tier) -> None:
        """A new tier lists nothing."""
        assert list(tier.list()) == []

    # -- delete --

    def test_delete_removes_only_that_object(self, tier: Tier) -> None:
        """delete removes the object; its siblings stay."""
        tier.put_bytes(key("d/one"), b"1", sha256=sha256(b"1"))
        tier.put_bytes(key("d/two"), b"2", sha256=sha256(b"2"))

        tier.delete(key("d/one"))

        assert not tier.exists(key("d/one"))
        assert set(tier.list()) == {"d/two"}
        assert tier.read_bytes(key("d/two")) == b"2"

    def test_delete_twice_and_delete_absent_are_not_errors(self, tier: Tier) -> None:
        """delete is idempotent: an absent key is not an error."""
        k = key("d/gone")
        tier.put_bytes(k, b"1", sha256=sha256(b"1"))

        tier.delete(k)
        tier.delete(k)
        tier.delete(ABSENT)

        assert list(tier.list()) == []

    def test_deleted_key_can_be_written_again(self, tier: Tier) -> None:
        """After a delete the key is free for a new object."""
        k = key("d/again")
        tier.put_bytes(k, b"1", sha256=sha256(b"1"))
        tier.delete(k)

        tier.put_bytes(k, b"2", sha256=sha256(b"2"))

        assert tier.read_bytes(k) == b"2"

    # -- unsafe keys --

    @pytest.mark.parametrize("unsafe", UNSAFE_KEYS)
    def test_unsafe_key_is_refused_and_nothing_is_written(
        self, tier: Tier, tmp_path: Path, unsafe: str
    ) -> None:
        """Keys that could leave the root raise InvalidKeyError on every call."""
        source = tmp_path / "source.bin"
        source.write_bytes(DATA)
        k = key(unsafe)
        calls: list[Callable[[], Any]] = [
            lambda: tier.put_bytes(k, DATA, sha256=sha256(DATA)),
            lambda: tier.put_file(k, source, sha256=sha256(DATA), move=True),
            lambda: tier.read_bytes(k),
            lambda: tier.read_range(k, 0, 1),
            lambda: tier.open_read(k),
            lambda: tier.size(k),
            lambda: tier.exists(k),
            lambda: tier.delete(k),
        ]

        for call in calls:
            with pytest.raises(InvalidKeyError, match="unsafe object key component"):
                call()

        assert list(tier.list()) == []
        assert source.read_bytes() == DATA
        assert not (tmp_path / "x").exists()

    # -- corruption behind the tier's back --

    def test_flipped_byte_is_returned_as_stored_not_hidden(
        self, tier: Tier, corrupt: Corrupt
    ) -> None:
        """A byte flipped in storage comes back flipped, so checksums catch it."""
        k = key("studies/1.2.3/instance.bin")
        info = tier.put_bytes(k, DATA, sha256=sha256(DATA))

        corrupt(k, 1234)

        found = tier.read_bytes(k)
        assert sha256(found) != info.sha256
        assert len(found) == len(DATA)
        assert [i for i in range(len(DATA)) if found[i] != DATA[i]] == [1234]
        assert tier.read_range(k, 1234, 1) == bytes([DATA[1234] ^ 0xFF])
        with tier.open_read(k) as stream:
            assert stream.read() == found

    # -- opening by URL --

    def test_open_tier_builds_this_backend_from_its_url(
        self, tier: Tier, storage_options: dict[str, Any]
    ) -> None:
        """open_tier(url) builds this backend over the same objects."""
        k = key("by-url.bin")
        tier.put_bytes(k, DATA, sha256=sha256(DATA))

        opened = open_tier("again", tier.url, storage_options)

        assert type(opened) is type(tier)
        assert opened.url == tier.url
        assert opened.read_bytes(k) == DATA

    # -- zarr --

    def test_zarr_store_reads_a_sharded_array_frame_by_frame(
        self, tier: Tier, tmp_path: Path
    ) -> None:
        """A sharded, zstd-compressed array uploaded file by file reads back."""
        rows, cols = 16, 12
        frames = np.random.default_rng(7).integers(
            0, 4096, size=(10, rows, cols), dtype=np.uint16
        )
        local = tmp_path / "frames.zarr"
        written = zarr.create_array(
            store=LocalStore(local),
            shape=frames.shape,
            chunks=(1, rows, cols),
            shards=(4, rows, cols),
            dtype=frames.dtype,
            compressors=[ZstdCodec(level=3)],
            fill_value=0,
            zarr_format=3,
        )
        written[:] = frames
        prefix = key("studies/1.2.3/frames")
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            data = path.read_bytes()
            part = path.relative_to(local).as_posix()
            tier.put_file(key(f"{prefix}/{part}"), path, sha256=sha256(data))

        array = zarr.open_array(store=tier.zarr_store(prefix), mode="r")

        assert array.shape == frames.shape
        assert array.shards == (4, rows, cols)
        for index in range(frames.shape[0]):
            np.testing.assert_array_equal(array[index], frames[index])
