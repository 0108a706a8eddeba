"""Files the CLI must not trust: a corrupt prefix-cache file never crashes `cache list`,
`cache clear` or `validate` (it is reported), and a GGUF of unverified tensor types is refused
by `validate` and `start` in one line."""

import json
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from pensieve_cli import cli
from pensieve_inference.cache_faults import ALL
from pensieve_model_support.testing import build_tiny_model


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PENSIEVE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for var in ("PENSIEVE_MODEL", "PENSIEVE_PORT", "PENSIEVE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "home"


def run(*args):
    return CliRunner().invoke(cli, list(args))


def _corrupt_files(home, names):
    """One good prefix file per corruption (a distinct token list each), then corrupted."""
    import mlx.core as mx
    from mlx_lm.models.cache import KVCache

    from pensieve_inference.disk_cache import DiskPrefixStore

    store = DiskPrefixStore(home / "prefix-cache", "weights", 1 << 30, model_name="tiny")
    for i, _ in enumerate(names):
        layer = KVCache()
        layer.update_and_fetch(mx.ones((1, 2, 12, 8), mx.float16) * i, mx.ones((1, 2, 12, 8), mx.float16))
        store.save(list(range(i, i + 12)), [layer])
    store.wait()
    paths = sorted((home / "prefix-cache" / "weights").glob("*.safetensors"))
    for name, path in zip(names, paths, strict=True):
        path.write_bytes(ALL[name](path.read_bytes()))
    return paths


def test_cache_list_shows_every_corrupt_file_and_clear_deletes_them(home):
    names = sorted(ALL)
    paths = _corrupt_files(home, names)
    listed = run("cache", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert len(rows) == len(names)
    # The header is checked by a plain list; a flipped tensor byte only by reading every byte.
    assert sum(bool(r["problem"]) for r in rows) == len(names) - 1
    verified = json.loads(run("cache", "list", "--json", "--verify").output)
    assert all(r["problem"] for r in verified)
    table = run("cache", "list", "--verify")
    assert table.exit_code == 0 and f"{len(names)} corrupt" in table.output

    cleared = run("cache", "clear", "--yes")
    assert cleared.exit_code == 0, cleared.output
    assert f"deleted {len(names)} persisted prefixes" in cleared.output
    assert not any(p.exists() for p in paths)
    assert json.loads(run("cache", "list", "--json").output) == []


def test_cache_commands_use_the_home_flag(home, tmp_path):
    other = tmp_path / "other-home"
    (path,) = _corrupt_files(other, ["flipped_tensor_bytes"])
    assert json.loads(run("cache", "list", "--json").output) == []
    (row,) = json.loads(run("cache", "list", "--json", "--home", str(other)).output)
    assert row["path"] == str(path)
    cleared = run("cache", "clear", "--yes", "--home", str(other))
    assert cleared.exit_code == 0 and "deleted 1 persisted prefixes" in cleared.output
    assert not path.exists()


def test_validate_reports_corrupt_prefix_files(home, tmp_path):
    names = ["header_length_2_63", "flipped_tensor_bytes"]
    paths = _corrupt_files(home, names)
    result = run("validate", "--model", str(build_tiny_model(tmp_path / "tiny")))
    assert result.exit_code == 0, result.output
    for path in paths:
        assert f"bad  prefix cache file {path}: " in result.output
    assert "header length 9223372036854775808 does not fit" in result.output
    assert "the tensor bytes do not match the digest" in result.output
    assert "2 of 2 files corrupt" in result.output
    assert all(p.exists() for p in paths)  # validate only looks


def test_validate_says_ok_for_good_prefix_files(home, tmp_path):
    _corrupt_files(home, [])
    result = run("validate", "--model", str(build_tiny_model(tmp_path / "tiny")))
    assert result.exit_code == 0 and "ok   prefix cache: 0 files check out" in result.output


def _one_line_refusal(output):
    (line,) = [line for line in output.splitlines() if line.startswith("pensieve: ") and "tensor types" in line]
    assert (
        "holds IQ2_XXS tensors" in line
        and "supported GGUF tensor types: F32, F16, BF16, Q4_0, Q4_1, Q8_0, Q2_K" in line
    )
    assert "--model mlx-community/" in line and "Traceback" not in output


def test_validate_refuses_a_gguf_of_an_unread_tensor_type_in_one_line(home, tmp_path):
    from pensieve_model_support.gguf.testing import build_tiny_gguf

    result = run("validate", "--model", str(build_tiny_gguf(tmp_path / "tiny-IQ2_XXS.gguf", "IQ2_XXS")))
    assert result.exit_code == 1
    _one_line_refusal(result.output)


def test_start_refuses_a_gguf_of_an_unread_tensor_type_in_one_line_and_exits_1(home, tmp_path):
    import os

    from pensieve_model_support.gguf.testing import build_tiny_gguf

    model = build_tiny_gguf(tmp_path / "tiny-IQ2_XXS.gguf", "IQ2_XXS")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # A subprocess with a timeout: were the file accepted, the server would serve until killed.
    done = subprocess.run(
        [sys.executable, "-m", "pensieve_cli", "start", "--model", str(model), "--port", str(port)],
        env={**os.environ, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    _one_line_refusal(done.stderr)


def _converted_copy(home, tmp_path):
    """A GGUF converted and kept as the server keeps it under the home."""
    from pensieve_model_support.gguf.convert import read_converted
    from pensieve_model_support.gguf.converted_store import save_converted
    from pensieve_model_support.gguf.testing import build_tiny_gguf

    gguf = build_tiny_gguf(tmp_path / "tiny-q4_k.gguf", "Q4_K")
    return gguf, save_converted(home / "converted", gguf, read_converted(gguf)[0])


def test_cache_list_converted_shows_the_kept_copies_and_clear_converted_deletes_them(home, tmp_path):
    gguf, kept = _converted_copy(home, tmp_path)
    (row,) = json.loads(run("cache", "list", "--converted", "--json").output)
    assert row["source"] == str(gguf.resolve()) and row["path"] == str(kept) and row["problem"] is None
    table = run("cache", "list", "--converted")
    assert table.exit_code == 0 and str(gguf.resolve()) in table.output and "1 converted GGUF files" in table.output
    # The prefix listing keeps its own output, with one line pointing at the converted files.
    plain = run("cache", "list")
    assert plain.output.splitlines()[0].startswith("no persisted prefixes in ")
    assert "also 1 converted GGUF files" in plain.output
    assert json.loads(run("cache", "list", "--json").output) == []

    assert "deleted 0" not in run("cache", "clear", "--yes").output and kept.exists()
    cleared = run("cache", "clear", "--converted", "--yes")
    assert cleared.exit_code == 0 and "deleted 1 converted GGUF files" in cleared.output
    assert not kept.exists()
    assert "no converted GGUF files in" in run("cache", "list", "--converted").output


def test_a_truncated_converted_copy_lists_as_corrupt_and_clears(home, tmp_path):
    _, kept = _converted_copy(home, tmp_path)
    kept.write_bytes(kept.read_bytes()[:-10])
    (row,) = json.loads(run("cache", "list", "--converted", "--json").output)
    assert "truncated" in row["problem"]
    assert "(corrupt)" in run("cache", "list", "--converted").output
    assert "deleted 1 converted GGUF files" in run("cache", "clear", "--converted", "--yes").output


def test_validate_refuses_an_unread_pre_tokenizer_before_loading(home, tmp_path):
    from pensieve_model_support.gguf.testing import build_tiny_gguf

    path = build_tiny_gguf(tmp_path / "tiny.gguf")
    # Rewrite the pre-tokenizer's name in place (the same length): a file of a newer tokenizer.
    data = path.read_bytes()
    key = b"tokenizer.ggml.pre"
    at = data.index(key) + len(key) + 4 + 8  # the value's type (uint32) and length (uint64)
    assert data[at : at + 6] == b"smollm"
    path.write_bytes(data[:at] + b"tekken" + data[at + 6 :])
    result = run("validate", "--model", str(path))
    assert result.exit_code == 1
    assert "pre-tokenizer 'tekken' is not supported yet (supported: deepseek-coder" in result.output
    assert "chat template" not in result.output  # refused before loading
