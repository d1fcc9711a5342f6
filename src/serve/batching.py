"""Dynamic batching: requests that arrive within a short window share one call of the model.

Each route has a `Batcher`: a bounded queue of (input, future) pairs and a loop that takes the first waiting request,
gathers those that arrive within `window` seconds after it (up to `max_batch`), and runs them as one batch in the
server's single model thread (the graphs are not thread-safe, and one call on many rows is what makes batching pay).
A full queue refuses at once (`Busy`: the server answers 503 with Retry-After); a request that times out is dropped
from its batch if the batch has not started.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from typing import Any, Callable, List, Sequence

from src.serve.metrics import Metrics


class Busy(Exception):
    """The route's queue is full."""


class Batcher:
    def __init__(self, route: str, run: Callable[[Sequence[Any]], List[Any]], max_batch: int, window: float,
                 capacity: int, executor: Executor, metrics: Metrics):
        self.route, self.run, self.max_batch, self.window = route, run, max_batch, window
        self.executor, self.metrics = executor, metrics
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=capacity)
        self.task = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.serve())

    async def submit(self, item: Any, timeout: float) -> Any:
        """The result of `item` (an exception the run gave for it is raised); Busy when the queue is full,
        asyncio.TimeoutError after `timeout` seconds."""
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait((item, future))
        except asyncio.QueueFull:
            raise Busy(self.route) from None
        return await asyncio.wait_for(future, timeout)

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.window
            while len(batch) < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            live = [(item, future) for item, future in batch if not future.done()]  # timed out ones are cancelled
            if not live:
                continue
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(self.executor, self.run, [item for item, _ in live])
            except Exception as e:  # a failure of the whole batch reaches each of its requests
                results = [e] * len(live)
            self.metrics.batch(self.route, len(live), time.perf_counter() - started)
            for (_, future), result in zip(live, results):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
