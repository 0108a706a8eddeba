"""The prefix-cache file's digest (pieces hashed in parallel, then hashed in order) still sees
every changed byte, and a file of the format before it is refused as stale, never misread."""

import hashlib
import json
import os
import struct

import mlx.core as mx
import msgspec
import pytest
from mlx_lm.models.cache import KVCache
from structlog.testing import capture_logs

from pensieve_inference import cache_file
from pensieve_inference.cache_file import CorruptFileError
from pensieve_inference.disk_cache import DiskPrefixStore, list_entries, verify_entry

TOKENS = tuple(range(3, 40))


def _layers(seed=0, layers=2, dtype=mx.bfloat16):
    mx.random.seed(seed)
    shape = (1, 2, len(TOKENS), 8)
    pairs = [[mx.random.normal(shape).astype(dtype) for _ in range(2)] for _ in range(layers)]
    return [KVCache.from_state((keys, values, len(TOKENS))) for keys, values in pairs]


def _written(root, seed=0):
    path = root / "weights" / f"{cache_file.token_hash(TOKENS)}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    cache_file.write(path, _layers(seed), model="weights", model_name="tiny", tokens=TOKENS)
    return path


def _spans(path):
    """Each tensor's absolute byte range in the file."""
    (length,) = struct.unpack("<Q", path.read_bytes()[:8])
    header = json.loads(path.read_bytes()[8 : 8 + length])
    offsets = {n: t["data_offsets"] for n, t in header.items() if n != "__metadata__"}
    return {n: (8 + length + a, 8 + length + b) for n, (a, b) in offsets.items()}


def _both_refuse(path):
    for check in (cache_file.verify, cache_file.read):
        with pytest.raises(CorruptFileError, match="do not match the digest"):
            check(path)


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces of 100 bytes, so each tensor of 1184 bytes is twelve, the last one short."""
    monkeypatch.setattr(cache_file, "PIECE_BYTES", 100)


def test_a_good_file_passes_whatever_the_piece_size_and_thread_count(tmp_path, small_pieces, monkeypatch):
    path = _written(tmp_path)
    for workers in (1, 3):
        monkeypatch.setattr(cache_file, "_WORKERS", workers)
        cache_file.verify(path)
        header, layers = cache_file.read(path)
        assert header.tokens == TOKENS and len(layers) == 2
        assert all(mx.array_equal(a.keys, b.keys) for a, b in zip(layers, _layers(), strict=True))


@pytest.mark.parametrize("where", ["first", "piece_end", "middle", "last"])
def test_a_flipped_byte_in_any_tensor_is_caught(tmp_path, small_pieces, where):
    path = _written(tmp_path)
    good = path.read_bytes()
    for start, end in _spans(path).values():
        at = {"first": start, "piece_end": start + 99, "middle": (start + end) // 2, "last": end - 1}[where]
        if not start <= at < end:
            continue  # the 4-byte offsets have no 100th byte
        bad = bytearray(good)
        bad[at] ^= 0x01
        path.write_bytes(bad)
        _both_refuse(path)
        path.write_bytes(good)
        cache_file.verify(path)


def test_pieces_swapped_within_a_tensor_are_caught(tmp_path, small_pieces):
    """Each piece's hash names where in its tensor it starts, so moved bytes do not pass."""
    path = _written(tmp_path)
    start, _ = _spans(path)["0.0"]
    data = bytearray(path.read_bytes())
    first, second = data[start : start + 100], data[start + 100 : start + 200]
    assert first != second
    data[start : start + 200] = second + first
    path.write_bytes(data)
    _both_refuse(path)


def test_a_file_replaced_while_it_is_read_is_not_restored(tmp_path, monkeypatch):
    """The header checked is the first file's, the bytes MLX loads the second's: a mismatch."""
    path = _written(tmp_path)
    other = _written(tmp_path / "other", seed=1)
    real = cache_file.read_header

    def then_replaced(p):
        header = real(p)
        os.replace(other, path)
        return header

    monkeypatch.setattr(cache_file, "read_header", then_replaced)
    with pytest.raises(CorruptFileError):
        cache_file.read(path)


def _as_format_1(path):
    """The file as the pensieve before the tree digest wrote it: no version, and one blake2b
    stream over every tensor's identity and bytes."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    meta = header["__metadata__"]
    h = hashlib.blake2b(digest_size=32)
    h.update(msgspec.json.encode([meta["0.pensieve_model"], meta["0.pensieve_tokens"]]))
    for name in sorted(n for n in header if n != "__metadata__"):
        t = header[name]
        h.update(msgspec.json.encode([name, t["dtype"], t["shape"]]))
        h.update(raw[8 + length + t["data_offsets"][0] : 8 + length + t["data_offsets"][1]])
    del meta["0.pensieve_format"]
    meta["0.pensieve_digest"] = h.hexdigest()
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + raw[8 + length :])


@pytest.mark.parametrize("version", ["1", "3"])
def test_a_file_of_another_format_is_refused_as_stale_and_removed(tmp_path, version):
    root = tmp_path / "prefix-cache"
    path = _written(root)
    _as_format_1(path)
    if version == "3":  # as a later pensieve might write: read nothing it cannot check
        raw = path.read_bytes()
        (length,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + length])
        header["__metadata__"]["0.pensieve_format"] = "3"
        encoded = json.dumps(header).encode()
        path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + raw[8 + length :])
    (entry,) = list_entries(root)
    assert entry.problem.startswith(f"stale: format {version}") and verify_entry(entry).problem == entry.problem
    for check in (cache_file.read_header, cache_file.verify, cache_file.read):
        with pytest.raises(CorruptFileError, match="stale"):
            check(path)
    with capture_logs() as logs:
        store = DiskPrefixStore(root, "weights", 1 << 30)  # opening the store removes it
    assert len(store) == 0 and not path.exists()
    assert [e["path"] for e in logs if e["event"] == "prefix_cache_file_corrupt"] == [str(path)]
