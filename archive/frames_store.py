"""Frames as Zarr v3 arrays: one frame per chunk, chunks grouped in shards.

Native frames are a typed little-endian array ``(frames, *frame_shape)``
compressed with zstd. Compressed frames (JPEG, JPEG 2000, RLE, ...) are a
one-dimensional array of variable-length bytes holding each frame's
original bitstream, never re-encoded. Every chunk carries a CRC32C that
zarr checks on read; the manifest also holds each frame's SHA-256.

A frame is one small read: the shard index, then one ranged read of the
frame's chunk.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec
from zarr.errors import UnstableSpecificationWarning
from zarr.storage import LocalStore

# Compressed frames use zarr's variable-length bytes data type, which has no
# ratified Zarr v3 specification yet; the README's Limitations say so.
warnings.filterwarnings("ignore", category=UnstableSpecificationWarning)


def shard_frames(frame_nbytes: int, count: int, shard_bytes: int) -> int:
    """How many frames go in one shard for a target shard size."""
    return max(1, min(count, shard_bytes // max(1, frame_nbytes)))


def create_native(
    path: Path,
    count: int,
    shape: tuple[int, ...],
    dtype: np.dtype,
    per_shard: int,
    zstd_level: int,
) -> zarr.Array[Any]:
    """Create the frame array of a native instance in a local folder."""
    return zarr.create_array(
        store=LocalStore(path),
        shape=(count, *shape),
        chunks=(1, *shape),
        shards=(per_shard, *shape),
        dtype=dtype,
        compressors=[ZstdCodec(level=zstd_level), Crc32cCodec()],
        fill_value=0,
        zarr_format=3,
        config={"write_empty_chunks": True},
    )


def create_bitstreams(path: Path, count: int, per_shard: int) -> zarr.Array[Any]:
    """Create the frame array of an encapsulated instance in a local folder."""
    return zarr.create_array(
        store=LocalStore(path),
        shape=(count,),
        chunks=(1,),
        shards=(per_shard,),
        dtype=zarr.dtype.VariableLengthBytes(),
        compressors=[Crc32cCodec()],
        zarr_format=3,
        config={"write_empty_chunks": True},
    )


def write_block(
    array: zarr.Array[Any], start: int, frames: list[bytes] | np.ndarray
) -> None:
    """Write frames ``start ...`` (a whole shard at a time, ideally)."""
    if isinstance(frames, np.ndarray):
        array[start : start + len(frames)] = frames
    else:
        block = np.empty(len(frames), dtype=object)
        block[:] = frames
        array[start : start + len(frames)] = block


def read_block(array: zarr.Array[Any], start: int, stop: int) -> Iterator[bytes]:
    """Yield the stored bytes of frames ``start:stop`` in order."""
    # A slice of a zarr array is a numpy array; zarr types it more broadly.
    block = cast("np.ndarray[Any, Any]", array[start:stop])
    if array.dtype == np.dtype(object) or block.dtype == np.dtype(object):
        for item in block:
            yield bytes(item)
    else:
        for frame in block:
            yield frame.tobytes()
