"""PNG plots from benchmark JSON files (tools/bench/bench.py), written beside them.

uv run --group bench python tools/bench/plot.py docs/performance/*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {"pensieve": "#1f77b4", "mlx_lm.server": "#ff7f0e", "pensieve (cache off)": "#7f7f7f"}


def plot(path: Path) -> list[Path]:
    r = json.loads(path.read_text())
    made = []
    if r.get("concurrency_tps"):
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, by_n in r["concurrency_tps"].items():
            ns = sorted(int(n) for n in by_n)
            ax.plot(ns, [by_n[str(n)] for n in ns], marker="o", label=name, color=COLORS.get(name))
        ax.set(
            xscale="log", xlabel="concurrent streams", ylabel="aggregate tokens/s", title=f"Concurrency — {r['label']}"
        )
        ax.set_xticks([1, 2, 4, 8, 16], labels=["1", "2", "4", "8", "16"])
        ax.legend()
        ax.grid(alpha=0.3)
        made.append(_save(fig, path, "concurrency"))
    if r.get("agentic"):
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, a in r["agentic"].items():
            ax.plot(
                range(1, len(a["turns_s"]) + 1),
                a["turns_s"],
                marker="o",
                label=f"{name} ({a['total_s']:.1f} s)",
                color=COLORS.get(name),
            )
        ax.set(xlabel="turn", ylabel="seconds per turn", title=f"Agentic replay — {r['label']}")
        ax.legend()
        ax.grid(alpha=0.3)
        made.append(_save(fig, path, "agentic"))
    if r.get("single_stream"):
        s, raw = r["single_stream"], r["raw_generate_step"]
        fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.5))
        names = ["pensieve", "mlx_lm.server", "generate_step"]
        left.bar(
            names,
            [s["pensieve"]["ttft_s"], s["mlx_lm.server"]["ttft_s"], raw["ttft_s"]],
            color=["#1f77b4", "#ff7f0e", "#2ca02c"],
        )
        left.set(ylabel="seconds", title="TTFT")
        right.bar(
            names,
            [s["pensieve"]["decode_tps"], s["mlx_lm.server"]["decode_tps"], raw["decode_tps"]],
            color=["#1f77b4", "#ff7f0e", "#2ca02c"],
        )
        right.set(ylabel="tokens/s", title="Decode, one stream")
        fig.suptitle(r["label"])
        made.append(_save(fig, path, "single"))
    return made


def _save(fig, path: Path, what: str) -> Path:
    out = path.with_name(f"{path.stem}-{what}.png")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        for made in plot(Path(arg)):
            print(made)
