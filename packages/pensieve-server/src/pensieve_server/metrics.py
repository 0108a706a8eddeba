"""Prometheus text-format metrics, kept by hand (a few counters, gauges and histograms)."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
RATE_BUCKETS = (1, 5, 10, 20, 40, 80, 160, 320, 640)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1

    def render(self, name: str) -> list[str]:
        lines = [f'{name}_bucket{{le="{b}"}} {c}' for b, c in zip(self.buckets, self.counts, strict=True)]
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        lines += [f"{name}_sum {self.total:.6f}", f"{name}_count {self.count}"]
        return lines


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read_tokens = 0
        self.generations = 0
        self.joined_requests = 0
        # Generations whose prompt the prefix cache served in part (hits) or not at all (misses).
        self.prefix_hits = 0
        self.prefix_misses = 0
        self.ttft = Histogram(TTFT_BUCKETS)
        self.decode_rate = Histogram(RATE_BUCKETS)
        self.in_flight = 0
        self.gauges: dict[str, Callable[[], float]] = {}

    def request_done(self, path: str, status: int) -> None:
        with self._lock:
            self.requests[(path, status)] += 1

    def generation_done(
        self, *, input_tokens: int, output_tokens: int, ttft_s: float | None, decode_tps: float | None
    ) -> None:
        with self._lock:
            self.input_tokens += input_tokens
            self.output_tokens += output_tokens
            if ttft_s is not None:
                self.ttft.observe(ttft_s)
            if decode_tps is not None:
                self.decode_rate.observe(decode_tps)

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP pensieve_requests_total HTTP requests by route and status.",
                "# TYPE pensieve_requests_total counter",
                *(
                    f'pensieve_requests_total{{path="{p}",status="{s}"}} {n}'
                    for (p, s), n in sorted(self.requests.items())
                ),
                "# HELP pensieve_input_tokens_total Prompt tokens processed.",
                "# TYPE pensieve_input_tokens_total counter",
                f"pensieve_input_tokens_total {self.input_tokens}",
                "# HELP pensieve_output_tokens_total Tokens generated.",
                "# TYPE pensieve_output_tokens_total counter",
                f"pensieve_output_tokens_total {self.output_tokens}",
                "# HELP pensieve_generations_total Generations started (a request that joined one running is not"
                " another).",
                "# TYPE pensieve_generations_total counter",
                f"pensieve_generations_total {self.generations}",
                "# HELP pensieve_joined_requests_total Requests that joined an identical generation already running"
                " (resends).",
                "# TYPE pensieve_joined_requests_total counter",
                f"pensieve_joined_requests_total {self.joined_requests}",
                "# HELP pensieve_prefix_cache_hits_total Generations whose prompt the prefix cache served in part.",
                "# TYPE pensieve_prefix_cache_hits_total counter",
                f"pensieve_prefix_cache_hits_total {self.prefix_hits}",
                "# HELP pensieve_prefix_cache_misses_total Generations the prefix cache served nothing of.",
                "# TYPE pensieve_prefix_cache_misses_total counter",
                f"pensieve_prefix_cache_misses_total {self.prefix_misses}",
                "# HELP pensieve_cache_read_tokens_total Prompt tokens served from the prefix cache.",
                "# TYPE pensieve_cache_read_tokens_total counter",
                f"pensieve_cache_read_tokens_total {self.cache_read_tokens}",
                "# HELP pensieve_ttft_seconds Time to first token.",
                "# TYPE pensieve_ttft_seconds histogram",
                *self.ttft.render("pensieve_ttft_seconds"),
                "# HELP pensieve_decode_tokens_per_second Decode rate per request.",
                "# TYPE pensieve_decode_tokens_per_second histogram",
                *self.decode_rate.render("pensieve_decode_tokens_per_second"),
                "# HELP pensieve_requests_in_flight Generation requests running or queued.",
                "# TYPE pensieve_requests_in_flight gauge",
                f"pensieve_requests_in_flight {self.in_flight}",
            ]
            for name, read in self.gauges.items():
                lines += [f"# TYPE {name} gauge", f"{name} {read()}"]
        return "\n".join(lines) + "\n"


KNOWN_PATHS = frozenset({"/", "/health", "/metrics", "/v1/messages", "/v1/messages/count_tokens", "/v1/models"})


def path_label(path: str) -> str:
    """Bounded label values: unknown paths are not echoed into metrics."""
    if path.startswith("/v1/models/"):
        return "/v1/models/{id}"
    return path if path in KNOWN_PATHS else "other"
