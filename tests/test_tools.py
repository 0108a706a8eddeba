"""Everything under tools/ at least compiles, and the benchmarks run end to end in a smoke mode of
seconds, so a benchmark cannot rot unnoticed (bench.py once failed to compile for a whole session)."""

import json
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest

from pensieve_model_support.testing import build_tiny_model

BENCH = Path(__file__).resolve().parents[1] / "tools" / "bench"
TOOLS = sorted(BENCH.parent.rglob("*.py"))


def test_there_are_tools_to_check():
    assert len(TOOLS) >= 5


@pytest.mark.parametrize("path", TOOLS, ids=lambda p: p.name)
def test_tool_compiles(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)


@pytest.mark.parametrize("path", sorted(BENCH.parent.rglob("*.sh")), ids=lambda p: p.name)
def test_shell_tool_parses(path):
    done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _run(args, tmp_path):
    # The benchmark's own servers read PENSIEVE_HOME from it; never the user's.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_bench_runs_every_part_side_by_side(tmp_path):
    model = build_tiny_model(tmp_path / "model", context_length=32768)
    _run([str(BENCH / "bench.py"), "--model", str(model), "--label", "smoke", "--profile", "smoke",
          "--out", str(tmp_path / "out"), "--tool-chars", "2000"], tmp_path)  # fmt: skip
    result = json.loads((tmp_path / "out" / "smoke.json").read_text())
    assert set(result["single_stream"]) == {"pensieve", "mlx_lm.server"}
    assert set(result["concurrency_tps"]["pensieve"]) == {"1", "2"}
    assert set(result["raw_batch_tps"]) == {"1", "2"}  # mlx-lm's BatchGenerator at the same widths
    assert result["agentic"]["pensieve"]["cached_tokens"][1] > 0  # the second turn read the cache
    assert result["restart"]["warm_cached_tokens"] > 0
    assert result["restart"]["chosen_ttft_s"] > 0  # the second prefix, after both speeds were measured
    assert result["restart"]["cold_fresh_process_ttft_s"] > 0  # the cold a first restore is held to
    ratio_names = {"decode_vs_generate_step", "agentic_vs_mlx_lm_server", "streams_2_vs_batch_generator"}
    assert ratio_names | {"restart_chosen_vs_best"} <= set(result["ratios"])
    assert "| decode, one stream (tok/s) |" in (tmp_path / "out" / "smoke.md").read_text()


def test_head_of_line_runs(tmp_path):
    _run([str(BENCH / "head_of_line.py"), "--smoke", "--out", str(tmp_path)], tmp_path)
    (written,) = tmp_path.glob("head-of-line-*.json")
    assert json.loads(written.read_text())["chunk_shared_s"] > 0


def test_warm_turn_runs(tmp_path):
    _run([str(BENCH / "warm_turn.py"), "--smoke", "--label", "smoke", "--out", str(tmp_path)], tmp_path)
    result = json.loads((tmp_path / "smoke.json").read_text())
    # The header's phases and the debug line's reached the benchmark for every warm turn.
    (warm,) = result["warm"]["turns"][1:]
    assert {"render", "tokenize", "grammar", "queue", "cache", "prefill", "ttft"} <= set(warm["phases_ms"])
    assert warm["new_tokens"] > 0 and warm["floor_s"] > 0
    assert "| **TTFT at the client** |" in (tmp_path / "smoke.md").read_text()


def test_speculative_runs(tmp_path):
    _run([str(BENCH / "speculative.py"), "--smoke", "--out", str(tmp_path)], tmp_path)
    result = json.loads((tmp_path / "speculative-smoke.json").read_text())
    # The crafted edit turn's answer copies the file: drafts were accepted; prose copies nothing.
    assert result["kinds"]["edit"]["acceptance"] > 0 and result["kinds"]["edit"]["tokens_per_step"] > 1
    assert result["kinds"]["edit"]["identical_runs"] == 1
    assert "| edit (" in (tmp_path / "speculative-smoke.md").read_text()


def test_ranks_runs(tmp_path):
    _run([str(BENCH / "ranks.py"), "--smoke", "--label", "smoke", "--out", str(tmp_path)], tmp_path)
    result = json.loads((tmp_path / "smoke.json").read_text())
    assert set(result["runs"]) == {"1 process", "2 ranks, tensor", "2 ranks, pipeline"}
    assert [r["rank"] for r in result["runs"]["2 ranks, tensor"]["ranks"]] == [0, 1]
    assert result["collective_ms"] > 0
    assert "| 2 ranks, pipeline |" in (tmp_path / "smoke.md").read_text()


def test_kv_quant_runs(tmp_path):
    _run([str(BENCH / "kv_quant.py"), "--smoke", "--out", str(tmp_path)], tmp_path)
    result = json.loads((tmp_path / "kv-quant-smoke.json").read_text())
    rows = result["settings"]
    assert list(rows) == ["none", "8", "4"] and rows["8"]["cache_type"] == "QuantizedKVCache"
    # The cache costs what validate computes, less with fewer bits; the engine decodes as generate_step does.
    assert all(r["bytes_per_token"] == r["computed_bytes_per_token"] for r in rows.values())
    assert rows["none"]["bytes_per_token"] > rows["8"]["bytes_per_token"] > rows["4"]["bytes_per_token"]
    assert all(r["engine_same_as_generate_step"] for r in rows.values())
    assert "| 8 |" in (tmp_path / "kv-quant-smoke.md").read_text()


def test_constraint_cost_runs(tmp_path):
    _run([str(BENCH / "constraint_cost.py"), "--smoke", "--out", str(tmp_path)], tmp_path)
    result = json.loads((tmp_path / "constraint-cost-smoke.json").read_text())
    by = {(r["mode"], r["streams"]): r for r in result["rows"]}
    assert set(by) == {(m, s) for m in ("bare", "auto", "forced", "forced_rows") for s in (1, 2)}
    # Two forced streams share the batch's mask fills; switched off, each row fills its own.
    assert by["forced", 2]["fills"] > 0 and by["forced", 2]["masks_per_fill"] > 1
    assert by["forced_rows", 2]["fills"] == 0
    assert {(r["mode"], r["streams"]) for r in result["raw_batch_generator"]} == {
        (m, s) for m in ("bare", "forced", "forced_rows") for s in (1, 2)
    }
    assert "| forced/bare | forced_rows/bare |" in (tmp_path / "constraint-cost-smoke.md").read_text()


def test_cache_read_runs(tmp_path):
    _run([str(BENCH / "cache_read.py"), "--smoke", "--out", str(tmp_path)], tmp_path)
    result = json.loads((tmp_path / "cache-read-smoke.json").read_text())
    # Every phase ran and was timed, the end-to-end restore among them.
    assert {"header", "file_read", "mlx_load", "digest_1", "verify", "read"} <= set(result["phases"])
    assert all(row["best_s"] > 0 for row in result["phases"].values())
    assert "| read |" in (tmp_path / "cache-read-smoke.md").read_text()


def test_cuda_attention_runs_both_settings(tmp_path):
    _run([str(BENCH / "cuda_attention.py"), "--smoke", "--out", str(tmp_path)], tmp_path)
    result = json.loads((tmp_path / "cuda-attention-smoke.json").read_text())
    assert set(result["runs"]) == {"1", "0"}  # MLX's default and pensieve's, each in its own process
    for run in result["runs"].values():
        assert len(run["prefill_s"]) == 4 and all(t > 0 for t in run["prefill_s"])
        assert run["lookup_tps"] > 0 and run["plain_tps"] > 0
    assert "| one stream, prompt lookup" in (tmp_path / "cuda-attention-smoke.md").read_text()


def test_engine_batch_runs_both_sides(tmp_path):
    _run([str(BENCH / "engine_batch.py"), "--smoke", "--out", str(tmp_path)], tmp_path)
    result = json.loads((tmp_path / "engine-batch-smoke.json").read_text())
    assert set(result["widths"]) == {"1", "2"}
    for row in result["widths"].values():
        assert row["engine"]["aggregate_tps"] > 0 and row["raw"]["aggregate_tps"] > 0
    assert result["widths"]["2"]["engine_step_s"] > 0  # the batch's steps were timed
    assert "| 2 |" in (tmp_path / "engine-batch-smoke.md").read_text()


def test_event_loop_cost_runs(tmp_path):
    _run([str(BENCH / "event_loop_cost.py"), "--smoke", "--out", str(tmp_path)], tmp_path)
    result = json.loads((tmp_path / "event-loop-smoke.json").read_text())
    (burst,) = result["runs"]["this tree"]
    assert burst["tokens"] > 0 and burst["tps"] > 0 and burst["loop_us_per_token"] >= 0
    assert "| this tree |" in (tmp_path / "event-loop-smoke.md").read_text()


def test_first_start_runs_three_starts(tmp_path):
    _run([str(BENCH / "first_start.py"), "--smoke", "--out", str(tmp_path)], tmp_path)
    result = json.loads((tmp_path / "first-start-smoke.json").read_text())
    assert list(result["starts"]) == ["fresh home", "same home again", "another fresh home"]
    for start in result["starts"].values():
        assert start["ready_s"] > 0 and start["first_ttft_s"] > 0 and start["second_ttft_s"] > 0
    assert "| same home again |" in (tmp_path / "first-start-smoke.md").read_text()


def test_batch_mask_runs_every_column(tmp_path):
    _run([str(BENCH / "batch_mask.py"), "--smoke", "--out", str(tmp_path)], tmp_path)
    result = json.loads((tmp_path / "batch-mask-smoke.json").read_text())
    assert result["generate_step_tps"] > 0 and set(result["widths"]) == {"1", "2"}
    assert all(v > 0 for row in result["widths"].values() for v in row.values())
    assert "| 2 |" in (tmp_path / "batch-mask-smoke.md").read_text()


def test_burst_start_times_each_request(tmp_path):
    _run([str(BENCH / "burst_start.py"), "--smoke", "--out", str(tmp_path)], tmp_path)
    result = json.loads((tmp_path / "burst-start-smoke.json").read_text())
    (burst,) = result["bursts"]
    assert burst["tokens"] > 0 and burst["tps"] > 0 and len(burst["requests"]) == 2
    for r in burst["requests"]:  # in the order a request meets them
        assert 0 <= r["sent_s"] <= r["headers_s"] <= r["first_token_s"] <= r["end_s"]
    assert "| last first token (s) |" in (tmp_path / "burst-start-smoke.md").read_text()


def test_burst_start_reads_a_py_spy_profile_in_time_order(tmp_path, monkeypatch):
    """py-spy is not installed here: a speedscope file of the shape it writes, made by hand."""
    monkeypatch.syspath_prepend(str(BENCH))
    from burst_start import worker_timeline

    frames = [
        {"name": "Condition.wait", "file": "/usr/lib/python3.11/threading.py"},
        {"name": "GenerationBatch._step", "file": "/x/mlx_lm/generate.py"},
        {"name": "PromptProcessingBatch.prompt", "file": "/x/mlx_lm/generate.py"},
        {"name": "EpollSelector.select", "file": "/usr/lib/python3.11/selectors.py"},
        {"name": "Connection.send", "file": "/x/hypercorn/protocol/h11.py"},
        {"name": "model_call", "file": "/x/site/mlx/nn/layers.py"},
    ]
    # 10 ms samples: the worker idle for 0.3 s, then prefill for 20 ms, then decode steps (the
    # step's innermost frame outside mlx-lm: named by mlx-lm's frame); the loop busy from 0.32 s.
    worker = [[0]] * 30 + [[2]] * 2 + [[1, 5]] * 5
    loop = [[3]] * 32 + [[4]] * 5
    profile = tmp_path / "p.speedscope.json"
    profile.write_text(json.dumps({
        "shared": {"frames": frames},
        "profiles": [
            {"name": 'Thread 1 "MainThread"', "samples": loop, "weights": [0.01] * len(loop)},
            {"name": 'Thread 2 "pensieve-mlx"', "samples": worker, "weights": [0.01] * len(worker)},
        ],
    }))  # fmt: skip
    # The first request was taken 10 ms after the release: the release sits at 0.29 s.
    rows = worker_timeline(profile, first_taken_s=0.01, until_s=0.07, bin_s=0.02)
    assert rows[0]["worker"][0][0] in ("idle", "generate:PromptProcessingBatch.prompt")
    assert rows[1]["worker"][0] == ("generate:PromptProcessingBatch.prompt", 0.5)
    assert rows[2]["worker"] == [("generate:GenerationBatch._step", 1.0)]
    assert rows[0]["event_loop_busy"] == 0.0 and rows[2]["event_loop_busy"] == 1.0
