"""bench.py's result as ratios against their targets and one markdown table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

TURNS = 10


def ratios(r: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    single = r.get("single_stream")
    if single:
        out["decode_vs_generate_step"] = single["pensieve"]["decode_tps"] / r["raw_generate_step"]["decode_tps"]
        out["ttft_vs_mlx_lm_server"] = single["pensieve"]["ttft_s"] / single["mlx_lm.server"]["ttft_s"]
        out["decode_vs_mlx_lm_server"] = single["pensieve"]["decode_tps"] / single["mlx_lm.server"]["decode_tps"]
    agent = r.get("agentic")
    if agent:
        out["agentic_vs_cache_off"] = agent["pensieve"]["total_s"] / agent["pensieve (cache off)"]["total_s"]
        out["agentic_vs_mlx_lm_server"] = agent["pensieve"]["total_s"] / agent["mlx_lm.server"]["total_s"]
    conc = r.get("concurrency_tps")
    if conc and 8 in conc["pensieve"]:
        out["pensieve_8_streams_vs_1"] = conc["pensieve"][8] / conc["pensieve"][1]
        out["mlx_lm_server_8_streams_vs_1"] = conc["mlx_lm.server"][8] / conc["mlx_lm.server"][1]
    for n, raw in (r.get("raw_batch_tps") or {}).items():
        if conc and n in conc["pensieve"]:
            out[f"streams_{n}_vs_batch_generator"] = conc["pensieve"][n] / raw
    rs = r.get("restart")
    if rs:
        # The first restart against a fresh process's cold where measured: the first process's
        # cold also compiled kernels (a fresh home keeps none yet).
        first_cold = rs.get("cold_fresh_process_ttft_s", rs["cold_ttft_s"])
        out["restart_warm_vs_cold_ttft"] = rs["warm_ttft_s"] / first_cold
        # A first restart guesses the read speed from a plain read; a later prefix is read only if it pays.
        out["restart_first_vs_best"] = rs["warm_ttft_s"] / min(first_cold, rs["warm_ttft_s"])
        cold = rs.get("cold_after_restart_ttft_s", rs["cold_b_ttft_s"])  # cold in the same process
        out["restart_chosen_vs_best"] = rs["chosen_ttft_s"] / min(cold, rs["warm_ttft_s"])
    return out


def _target(name: str) -> tuple[str, Callable[[float], bool]] | None:
    if name.startswith("streams_") and name.endswith("_vs_batch_generator"):
        return "≥ 0.9", lambda v: v >= 0.9
    return TARGETS.get(name)


TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "decode_vs_generate_step": ("≥ 0.97", lambda v: v >= 0.97),
    "ttft_vs_mlx_lm_server": ("≤ 1.0", lambda v: v <= 1.0),
    "decode_vs_mlx_lm_server": ("≥ 1.0", lambda v: v >= 1.0),
    "agentic_vs_cache_off": ("≤ 0.2", lambda v: v <= 0.2),
    "agentic_vs_mlx_lm_server": ("≤ 0.5", lambda v: v <= 0.5),
    "pensieve_8_streams_vs_1": ("≥ 4 (GPU)", lambda v: v >= 4),
    "restart_warm_vs_cold_ttft": ("≤ 0.1", lambda v: v <= 0.1),
    "restart_first_vs_best": ("≤ 1.05", lambda v: v <= 1.05),
    "restart_chosen_vs_best": ("≤ 1.05", lambda v: v <= 1.05),
}


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"## {r['label']}",
        "",
        f"Machine: {m.get('gpu') or 'CPU'} · {m['cpus']} CPUs · {m['platform']} · "
        f"MLX {m['mlx']} ({m['device']}) · {r['when']}",
        f"Model: `{Path(r['model']).name}`",
        "",
        "| ratio | measured | target | met |",
        "| --- | --- | --- | --- |",
    ]
    for name, value in r["ratios"].items():
        target = _target(name)
        if target is None:  # context for a target, not one itself
            lines.append(f"| {name} | {value:.3f} | | — |")
            continue
        lines.append(f"| {name} | {value:.3f} | {target[0]} | {'yes' if target[1](value) else 'no'} |")
    lines += ["", "| measure | pensieve | mlx_lm.server | mlx-lm in process |", "| --- | --- | --- | --- |"]
    if r.get("single_stream"):
        raw = r["raw_generate_step"]
        ours, peer = r["single_stream"]["pensieve"], r["single_stream"]["mlx_lm.server"]
        lines.append(
            f"| TTFT, ~512-token prompt (s) | {ours['ttft_s']:.3f} | {peer['ttft_s']:.3f}"
            f" | {raw['ttft_s']:.3f} (generate_step) |"
        )
        lines.append(
            f"| decode, one stream (tok/s) | {ours['decode_tps']:.1f} | {peer['decode_tps']:.1f}"
            f" | {raw['decode_tps']:.1f} (generate_step) |"
        )
    batch = r.get("raw_batch_tps") or {}
    for n in r.get("concurrency_tps", {}).get("pensieve", {}):
        c = r["concurrency_tps"]
        floor = f"{batch[n]:.1f} (BatchGenerator)" if n in batch else ""
        lines.append(
            f"| {n} concurrent streams, aggregate (tok/s) | {c['pensieve'][n]:.1f}"
            f" | {c['mlx_lm.server'][n]:.1f} | {floor} |"
        )
    if r.get("agentic"):
        a = r["agentic"]
        lines.append(
            f"| agentic replay, {r['profile'].get('turns', TURNS)} turns (s) | {a['pensieve']['total_s']:.1f}"
            f" (cache off: {a['pensieve (cache off)']['total_s']:.1f}) | {a['mlx_lm.server']['total_s']:.1f} | |"
        )
    if r.get("restart"):
        rs = r["restart"]
        lines.append(
            f"| restart: TTFT cold → first restore (s) | {rs['cold_ttft_s']:.2f} → {rs['warm_ttft_s']:.2f}"
            f" ({rs['warm_cached_tokens']} tokens from disk) | | |"
        )
        if "cold_fresh_process_ttft_s" in rs:
            fresh = rs["cold_fresh_process_ttft_s"]
            lines.append(f"| restart: TTFT cold in a fresh process, disk cache off (s) | {fresh:.2f} | | |")
        lines.append(
            f"| restart, speeds known: TTFT cold → chosen (s) | {rs.get('cold_after_restart_ttft_s', 0):.2f} →"
            f" {rs['chosen_ttft_s']:.2f} ({rs['chosen_cached_tokens']} tokens cached) | | |"
        )
    if r.get("peak_rss_bytes"):
        pr = r["peak_rss_bytes"]
        lines.append(f"| peak RSS (GB) | {pr['pensieve'] / 1e9:.2f} | {pr['mlx_lm.server'] / 1e9:.2f} | |")
    if r.get("peak_gpu_bytes"):
        pg = r["peak_gpu_bytes"]
        lines.append(
            f"| peak GPU memory (GB) | {(pg['pensieve'] or 0) / 1e9:.2f} | {(pg['mlx_lm.server'] or 0) / 1e9:.2f} | |"
        )
    return "\n".join(lines) + "\n"
