"""Read TensorFlow (V2 "bundle") checkpoints with numpy alone: no TensorFlow, no protobuf.

A checkpoint ``PREFIX`` is an index file ``PREFIX.index`` and data shards
``PREFIX.data-0000k-of-0000n``. The index is a LevelDB-format table (SSTable):
uncompressed blocks of prefix-compressed key/value entries, each block followed by a
5-byte trailer (compression type, masked CRC-32C), and a 48-byte footer pointing at
the index block, whose entries point at the data blocks. Each data-block entry maps
a variable name to a serialized ``BundleEntryProto`` (dtype, shape, shard, offset,
size, masked CRC-32C of the tensor bytes); the empty key holds the
``BundleHeaderProto``. Tensors are raw little-endian arrays at ``offset`` in their
shard.

Every block trailer's checksum and every tensor's checksum is verified (CRC-32C,
table-driven in pure Python: about 15 MB/s, so a few tenths of a second for
musicnn's weights); a mismatch raises :class:`CheckpointError`.
Sliced (partitioned) variables and string tensors are not supported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_TRAILER_SIZE = 5
_MASK_DELTA = 0xA282EAD8

_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}
"""TensorFlow ``DataType`` enum values numpy can read directly."""


class CheckpointError(ValueError):
    """A checkpoint file is missing, malformed, unsupported or fails its checksum."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one variable lies in the shards, as the index records it."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None


def _crc32c_table() -> np.ndarray:
    poly = 0x82F63B78
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ poly, table >> 1).astype(np.uint32)
    return table


_TABLE = _crc32c_table()
_TABLE_LIST = [int(v) for v in _TABLE]


def crc32c(data: bytes) -> int:
    """The CRC-32C (Castagnoli) checksum of ``data``."""
    crc = 0xFFFFFFFF
    table = _TABLE_LIST
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """The CRC LevelDB and TensorFlow stored as ``masked`` (rotated and offset)."""
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointError("varint too long")


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """The ``(field number, value)`` pairs of a serialized protobuf message."""
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value = int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value = buf[pos : pos + length]
            pos += length
        elif wire == 5:
            value = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise CheckpointError("truncated protobuf message")
        fields.append((number, value))
    return fields


def _shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for number, value in _proto_fields(buf):
        if number == 2 and isinstance(value, bytes):  # TensorShapeProto.dim
            size = next((v for n, v in _proto_fields(value) if n == 1), 0)
            assert isinstance(size, int)
            dims.append(size - (1 << 64) if size >= 1 << 63 else size)
        elif number == 3 and value:  # unknown_rank
            raise CheckpointError("tensor of unknown rank")
    return tuple(dims)


def _entry(name: str, buf: bytes) -> TensorEntry:
    dtype = shard_id = offset = size = 0
    shape: tuple[int, ...] = ()
    crc: int | None = None
    for number, value in _proto_fields(buf):
        if number == 1 and isinstance(value, int):
            dtype = value
        elif number == 2 and isinstance(value, bytes):
            shape = _shape(value)
        elif number == 3 and isinstance(value, int):
            shard_id = value
        elif number == 4 and isinstance(value, int):
            offset = value
        elif number == 5 and isinstance(value, int):
            size = value
        elif number == 6 and isinstance(value, int):
            crc = value
        elif number == 7:
            raise CheckpointError(f"variable {name!r} is sliced (partitioned); not supported")
    return TensorEntry(name, dtype, shape, shard_id, offset, size, crc)


def _block(data: bytes, offset: int, size: int, path: Path) -> bytes:
    end = offset + size
    if end + _TRAILER_SIZE > len(data):
        raise CheckpointError(f"{path}: block at {offset} runs past the end of the file")
    contents = data[offset:end]
    kind = data[end]
    if kind != 0:
        raise CheckpointError(f"{path}: compressed table block (type {kind}); not supported")
    stored = int.from_bytes(data[end + 1 : end + 5], "little")
    if crc32c(data[offset : end + 1]) != unmask_crc(stored):
        raise CheckpointError(f"{path}: block at {offset} fails its CRC-32C check")
    return contents


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    """The key/value pairs of one table block, prefix compression undone."""
    if len(block) < 4:
        raise CheckpointError("table block too short")
    restarts = int.from_bytes(block[-4:], "little")
    end = len(block) - 4 * (restarts + 1)
    entries = []
    pos = 0
    key = b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_length]))
        pos += value_length
    return entries


def _handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def index_path(prefix: str | os.PathLike[str]) -> Path:
    """The index file of the checkpoint ``prefix``."""
    return Path(f"{os.fspath(prefix)}.index")


def shard_path(prefix: str | os.PathLike[str], shard: int, num_shards: int) -> Path:
    """Data shard ``shard`` of ``num_shards`` of the checkpoint ``prefix``."""
    return Path(f"{os.fspath(prefix)}.data-{shard:05d}-of-{num_shards:05d}")


def read_index(prefix: str | os.PathLike[str]) -> tuple[int, dict[str, TensorEntry]]:
    """The shard count and every variable's entry of the checkpoint ``prefix``."""
    path = index_path(prefix)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint index {path}: {exc.strerror}") from None
    if len(data) < _FOOTER_SIZE or int.from_bytes(data[-8:], "little") != _MAGIC:
        raise CheckpointError(f"{path}: not a TensorFlow checkpoint index (bad table magic)")
    footer = data[-_FOOTER_SIZE:]
    _, _, pos = _handle(footer)  # the metaindex block: empty in checkpoints
    index_offset, index_size, _ = _handle(footer, pos)
    num_shards = 1
    entries: dict[str, TensorEntry] = {}
    for _, handle in _block_entries(_block(data, index_offset, index_size, path)):
        offset, size, _ = _handle(handle)
        for raw_key, value in _block_entries(_block(data, offset, size, path)):
            if raw_key == b"":  # BundleHeaderProto: num_shards, endianness, version
                for number, field in _proto_fields(value):
                    if number == 1 and isinstance(field, int):
                        num_shards = field
                    elif number == 2 and field:
                        raise CheckpointError(f"{path}: big-endian checkpoint; not supported")
                continue
            name = raw_key.decode("utf-8")
            entries[name] = _entry(name, value)
    return num_shards, entries


class Checkpoint:
    """A TensorFlow checkpoint opened for reading: ``names``, ``shape(name)``, ``read(name)``."""

    def __init__(self, prefix: str | os.PathLike[str]) -> None:
        """Parse the index of the checkpoint ``prefix`` (the path without ``.index``)."""
        self.prefix = os.fspath(prefix)
        self.num_shards, self.entries = read_index(prefix)
        self._shards: dict[int, bytes] = {}

    @property
    def names(self) -> list[str]:
        """Every variable name, sorted."""
        return sorted(self.entries)

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of variable ``name``."""
        return self._lookup(name).shape

    def _lookup(self, name: str) -> TensorEntry:
        if name not in self.entries:
            raise CheckpointError(f"{self.prefix}: no variable {name!r} in the checkpoint")
        return self.entries[name]

    def _shard(self, shard: int) -> bytes:
        if shard not in self._shards:
            path = shard_path(self.prefix, shard, self.num_shards)
            try:
                self._shards[shard] = path.read_bytes()
            except OSError as exc:
                raise CheckpointError(
                    f"cannot read checkpoint shard {path}: {exc.strerror}"
                ) from None
        return self._shards[shard]

    def read(self, name: str) -> np.ndarray:
        """Variable ``name`` as a numpy array, its checksum verified."""
        entry = self._lookup(name)
        dtype = _DTYPES.get(entry.dtype)
        if dtype is None:
            raise CheckpointError(f"{name!r}: TensorFlow dtype {entry.dtype} not supported")
        data = self._shard(entry.shard_id)
        raw = data[entry.offset : entry.offset + entry.size]
        count = int(np.prod(entry.shape, dtype=np.int64))
        if len(raw) != entry.size or entry.size != count * dtype.itemsize:
            raise CheckpointError(f"{name!r}: {entry.size} bytes do not hold shape {entry.shape}")
        if entry.crc32c is not None and crc32c(raw) != unmask_crc(entry.crc32c):
            raise CheckpointError(f"{name!r} fails its CRC-32C check; the checkpoint is corrupt")
        return np.frombuffer(raw, dtype=dtype).reshape(entry.shape).astype(dtype.newbyteorder("="))
