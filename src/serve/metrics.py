"""What GET /metrics answers, in Prometheus' text format: requests by route and status, batch sizes, and latency
quantiles over the most recent requests of each route."""
from __future__ import annotations

import threading
from collections import Counter, defaultdict, deque
from typing import Deque, Dict

import numpy as np

RECENT = 2048  # latencies kept per route for the quantiles
QUANTILES = (0.5, 0.9, 0.99)


class Metrics:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests: Counter = Counter()                     # (route, status) -> count
        self.latency: Dict[str, Deque[float]] = defaultdict(lambda: deque(maxlen=RECENT))
        self.batches: Counter = Counter()                      # route -> batches run
        self.batched_rows: Counter = Counter()                 # route -> rows in them
        self.batch_seconds: Counter = Counter()

    def request(self, route: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[(route, status)] += 1
            self.latency[route].append(seconds)

    def batch(self, route: str, rows: int, seconds: float) -> None:
        with self.lock:
            self.batches[route] += 1
            self.batched_rows[route] += rows
            self.batch_seconds[route] += seconds

    def mean_batch(self, route: str) -> float:
        return self.batched_rows[route] / max(1, self.batches[route])

    def text(self) -> str:
        with self.lock:
            lines = ["# HELP opt_requests_total Requests answered, by route and HTTP status.",
                     "# TYPE opt_requests_total counter"]
            lines += [f'opt_requests_total{{route="{r}",status="{s}"}} {n}'
                      for (r, s), n in sorted(self.requests.items())]
            lines += ["# HELP opt_request_seconds Latency of the most recent requests of each route.",
                      "# TYPE opt_request_seconds summary"]
            for route, seen in sorted(self.latency.items()):
                values = np.array(seen)
                lines += [f'opt_request_seconds{{route="{route}",quantile="{q}"}} {np.quantile(values, q):.6f}'
                          for q in QUANTILES]
                lines += [f'opt_request_seconds_count{{route="{route}"}} {len(values)}',
                          f'opt_request_seconds_sum{{route="{route}"}} {values.sum():.6f}']
            lines += ["# HELP opt_batches_total Model calls, each on one dynamic batch.",
                      "# TYPE opt_batches_total counter"]
            lines += [f'opt_batches_total{{route="{r}"}} {n}' for r, n in sorted(self.batches.items())]
            lines += ["# HELP opt_batch_rows_total Requests answered by those calls.",
                      "# TYPE opt_batch_rows_total counter"]
            lines += [f'opt_batch_rows_total{{route="{r}"}} {n}' for r, n in sorted(self.batched_rows.items())]
            lines += ["# HELP opt_batch_seconds_total Time the model spent on those calls.",
                      "# TYPE opt_batch_seconds_total counter"]
            lines += [f'opt_batch_seconds_total{{route="{r}"}} {s:.6f}' for r, s in sorted(self.batch_seconds.items())]
        return "\n".join(lines) + "\n"
