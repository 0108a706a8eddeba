"""The server's counts: kept here as plain numbers, served as Prometheus text by
prometheus_client (`GET /metrics`) and as JSON by `GET /v1/status`, which also has, for the
status page, tokens per 10 s and the requests running and ended (inflight.py)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from .inflight import LiveRequests, Outcome

# The status page's speed chart: tokens per 10 s interval over the last five minutes.
RATE_INTERVAL_S = 10.0
RATE_INTERVALS = 30
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
RATE_BUCKETS = (1, 5, 10, 20, 40, 80, 160, 320, 640)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)  # cumulative, as Prometheus reports them
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        buckets = [(str(b), float(c)) for b, c in zip(self.buckets, self.counts, strict=True)]
        return HistogramMetricFamily(name, documentation, [*buckets, ("+Inf", float(self.count))], self.total)


class TokenRing:
    """Tokens counted into fixed intervals, the last `size` of them: speed over the last minutes
    without keeping one sample per token."""

    def __init__(
        self,
        interval_s: float = RATE_INTERVAL_S,
        size: int = RATE_INTERVALS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self.size = size
        self._clock = clock
        self._counts: dict[int, list[int]] = {}  # interval number -> [output, prefill]

    def add(self, *, output: int = 0, prefill: int = 0) -> None:
        n = int(self._clock() // self.interval_s)
        counts = self._counts.setdefault(n, [0, 0])
        counts[0] += output
        counts[1] += prefill
        for old in [k for k in self._counts if k <= n - self.size]:
            del self._counts[old]

    def read(self) -> tuple[float, list[int], list[int]]:
        """Seconds into the current interval, then output and prefill tokens per interval,
        oldest first; the last interval is the one under way."""
        now = self._clock()
        n = int(now // self.interval_s)
        rows = [self._counts.get(i, [0, 0]) for i in range(n - self.size + 1, n + 1)]
        return now - n * self.interval_s, [r[0] for r in rows], [r[1] for r in rows]


class Metrics:
    """The counts, which the routes bump on the event loop. One per app, with its own registry
    (never prometheus_client's global one): tests build many apps in one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read_tokens = 0
        self.generations = 0
        # How generations ended: finished, failed, or cancelled (the client left).
        self.outcomes: dict[Outcome, int] = defaultdict(int)
        self.joined_requests = 0
        # Generations whose prompt the prefix cache served in part (hits) or not at all (misses).
        self.prefix_hits = 0
        self.prefix_misses = 0
        self.ttft = Histogram(TTFT_BUCKETS)
        self.decode_rate = Histogram(RATE_BUCKETS)
        self.in_flight = 0
        self.rate = TokenRing()
        self.live = LiveRequests(self.rate)
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}
        self.registry = CollectorRegistry()
        self.registry.register(self)

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge read at each scrape (memory, the batch's generations)."""
        self._gauges[name] = (documentation, read)

    def request_done(self, path: str, status: int) -> None:
        with self._lock:
            self.requests[(path, status)] += 1

    @property
    def requests_total(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def prompt_started(self, *, prompt_tokens: int, cache_read_tokens: int) -> None:
        """A prompt reaches the worker: counted now (input, cache read and creation alike), so a
        generation that is then aborted still counts, and cache reads never outrun input."""
        with self._lock:
            self.input_tokens += prompt_tokens
            self.cache_read_tokens += cache_read_tokens

    def generation_ended(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes[outcome] += 1

    def generation_done(self, *, output_tokens: int, ttft_s: float | None, decode_tps: float | None) -> None:
        with self._lock:
            self.output_tokens += output_tokens
            if ttft_s is not None:
                self.ttft.observe(ttft_s)
            if decode_tps is not None:
                self.decode_rate.observe(decode_tps)

    def collect(self) -> Iterator[Metric]:
        """The registry's one collector: prometheus_client names counters `<name>_total`."""
        with self._lock:
            requests = CounterMetricFamily(
                "pensieve_requests", "HTTP requests by route and status.", labels=["path", "status"]
            )
            for (path, status), n in sorted(self.requests.items()):
                requests.add_metric([path, str(status)], n)
            yield requests
            ended = CounterMetricFamily(
                "pensieve_generations_ended",
                "Generations ended: finished, failed, or cancelled (the client left).",
                labels=["outcome"],
            )
            for outcome, n in sorted(self.outcomes.items()):
                ended.add_metric([outcome], n)
            yield ended
            counters = [
                ("pensieve_input_tokens", "Prompt tokens processed.", self.input_tokens),
                ("pensieve_output_tokens", "Tokens generated.", self.output_tokens),
                (
                    "pensieve_generations",
                    "Generations started (a request that joined one running is not another).",
                    self.generations,
                ),
                (
                    "pensieve_joined_requests",
                    "Requests that joined an identical generation already running (resends).",
                    self.joined_requests,
                ),
                (
                    "pensieve_prefix_cache_hits",
                    "Generations whose prompt the prefix cache served in part.",
                    self.prefix_hits,
                ),
                ("pensieve_prefix_cache_misses", "Generations the prefix cache served nothing of.", self.prefix_misses),
                ("pensieve_cache_read_tokens", "Prompt tokens served from the prefix cache.", self.cache_read_tokens),
            ]
            for name, documentation, value in counters:
                yield CounterMetricFamily(name, documentation, value=value)
            yield self.ttft.family("pensieve_ttft_seconds", "Time to first token.")
            yield self.decode_rate.family("pensieve_decode_tokens_per_second", "Decode rate per request.")
            yield GaugeMetricFamily(
                "pensieve_requests_in_flight", "Generation requests running or queued.", value=self.in_flight
            )
        for name, (documentation, read) in self._gauges.items():
            yield GaugeMetricFamily(name, documentation, value=read())

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition the scraper's Accept header asks for (Prometheus text or OpenMetrics)."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


KNOWN_PATHS = frozenset(
    {"/", "/health", "/metrics", "/v1/messages", "/v1/messages/count_tokens", "/v1/models", "/v1/status"}
)


def path_label(path: str) -> str:
    """Bounded label values: unknown paths are not echoed into metrics."""
    if path.startswith("/v1/models/"):
        return "/v1/models/{id}"
    return path if path in KNOWN_PATHS else "other"
