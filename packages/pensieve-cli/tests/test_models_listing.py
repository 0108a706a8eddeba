"""`pensieve models` lists the Hugging Face cache, Ollama's store and LM Studio's folder."""

import json

import pytest
from click.testing import CliRunner

from pensieve_cli import cli
from pensieve_model_support.gguf.testing import build_tiny_gguf
from pensieve_model_support.store_testing import write_lmstudio_model, write_ollama_model
from pensieve_model_support.testing import build_tiny_model


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A home holding one model of each kind, and one IQ2_XXS GGUF that does not load."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PENSIEVE_HOME", str(tmp_path / ".pensieve"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    good = build_tiny_gguf(tmp_path / "tiny-Q8_0.gguf", "Q8_0", hidden_size=64)
    iq2 = build_tiny_gguf(tmp_path / "tiny-IQ2_XXS.gguf", "IQ2_XXS", hidden_size=256)
    # The standard Hugging Face cache layout, written by hand: an MLX repo and a GGUF repo.
    for repo in ("someone--tiny", "someone--tiny-GGUF"):
        snapshot = tmp_path / "hf" / "hub" / f"models--{repo}" / "snapshots" / "abc"
        snapshot.mkdir(parents=True)
        (snapshot.parents[1] / "refs").mkdir()
        (snapshot.parents[1] / "refs" / "main").write_text("abc")
    build_tiny_model(tmp_path / "hf/hub/models--someone--tiny/snapshots/abc")
    (tmp_path / "hf/hub/models--someone--tiny-GGUF/snapshots/abc/tiny-Q8_0.gguf").write_bytes(good.read_bytes())
    ollama = tmp_path / ".ollama" / "models"
    write_ollama_model(ollama, "qwen3-coder", good, tag="30b", parameters={"num_ctx": 8192})
    write_ollama_model(ollama, "tiny-iq2", iq2)
    broken = write_ollama_model(ollama, "broken", good)
    broken.write_text("{not json")
    lmstudio = tmp_path / ".lmstudio" / "models"
    write_lmstudio_model(lmstudio, "lmstudio-community", "Tiny-GGUF", good)
    write_lmstudio_model(lmstudio, "mlx-community", "Tiny-4bit", build_tiny_model(tmp_path / "mlx"))
    return tmp_path


def listing():
    result = CliRunner().invoke(cli, ["models", "--json"])
    assert result.exit_code == 0, result.output
    return {m["reference"]: m for m in json.loads(result.output)}


def test_models_json_lists_every_store_with_the_reference_that_loads_it(machine):
    listed = listing()
    assert {ref: (m["source"], m["format"], m["loads"]) for ref, m in listed.items()} == {
        "smollm2-135m": ("bundled", "gguf", True),
        "someone/tiny": ("huggingface", "mlx", True),
        str(machine / "hf/hub/models--someone--tiny-GGUF/snapshots/abc/tiny-Q8_0.gguf"): ("huggingface", "gguf", True),
        "ollama:qwen3-coder:30b": ("ollama", "gguf", True),
        "ollama:tiny-iq2:latest": ("ollama", "gguf", False),
        "ollama:broken:latest": ("ollama", "gguf", False),
        "lmstudio:lmstudio-community/Tiny-GGUF": ("lmstudio", "gguf", True),
        "lmstudio:mlx-community/Tiny-4bit": ("lmstudio", "mlx", True),
    }
    ollama = listed["ollama:qwen3-coder:30b"]
    assert (ollama["context_length"], ollama["quantization"], ollama["chat_template"]) == (2048, "Q8_0", True)
    assert ollama["ollama_parameters"] == {"num_ctx": 8192} and ollama["ollama_template"] is True
    assert "IQ2_XXS" in listed["ollama:tiny-iq2:latest"]["why_not"]
    assert "cannot read its manifest" in listed["ollama:broken:latest"]["why_not"]


def test_models_table_marks_which_load_and_why_not(machine):
    table = CliRunner().invoke(cli, ["models"]).output
    row = next(line for line in table.splitlines() if line.startswith("tiny-iq2:latest"))
    assert "ollama" in row and "no: holds IQ2_XXS tensors" in row
    row = next(line for line in table.splitlines() if line.startswith("qwen3-coder:30b"))
    assert row.rstrip().endswith("yes")
    assert "--model ollama:qwen3-coder:30b" in table and "--model lmstudio:lmstudio-community/Tiny-GGUF" in table


def test_a_listed_reference_is_what_validate_accepts(machine):
    result = CliRunner().invoke(cli, ["validate", "--model", "ollama:qwen3-coder:30b"])
    assert result.exit_code == 0, result.output
    assert "context 2048 tokens" in result.output
