"""Serving benchmarks on loopback, bounded in count and time: the API against a process per image, and the HTTP
server at several client counts with and without dynamic batching.

    python bench/bench_serve.py --bundle runs/demo/exports/caption --images data/demo/raw/images \
        [--api-images 64] [--processes 8] [--clients 1,4,16,64] [--requests 64] [--soak-seconds 120] \
        [--soak-clients 32] [--json bench_serve.json]

Rows:
- api: `load(BUNDLE).caption` on --api-images images in one call (after one warm-up call), images/s; against
  `infer.py --mindir BUNDLE --image F`, one process per image, --processes of them timed one after the other.
- server: scripts/serve.sh on a free loopback port; for each client count, that many clients send --requests captions
  in all, each client one request at a time: captions/s, p50 and p99 latency, the mean batch (from /metrics); with
  dynamic batching (--max-batch 16) and with batches of 1.
- soak: --soak-clients clients for --soak-seconds with batching: requests sent, answered, failed, lost.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def images_of(folder: str, count: int) -> list:
    files = sorted(str(p) for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise SystemExit(f"no images in {folder}")
    return [files[i % len(files)] for i in range(count)]


def bench_api(bundle: str, images: list, processes: int) -> dict:
    from src.api import load
    model = load(bundle)
    model.caption(images[:1])
    started = time.perf_counter()
    model.caption(images)
    api = len(images) / (time.perf_counter() - started)
    started = time.perf_counter()
    for image in images[:processes]:
        subprocess.run([sys.executable, str(ROOT / "infer.py"), "--mindir", bundle, "--image", image], check=True,
                       capture_output=True, cwd=ROOT)
    per_process = processes / (time.perf_counter() - started)
    return {"api_images_per_s": api, "process_images_per_s": per_process, "ratio": api / per_process}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, bundle: str, max_batch: int):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(["bash", str(ROOT / "scripts" / "serve.sh"), bundle, "--port", str(self.port),
                                         "--max-batch", str(max_batch), "--queue", "256"],
                                        env={**os.environ, "PYTHON": sys.executable}, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)

    def __enter__(self):
        import httpx
        for _ in range(600):
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.5)
        raise RuntimeError("the server did not start in 5 minutes")

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(60)

    def batches(self) -> tuple:
        import httpx
        text = httpx.get(f"{self.base}/metrics").text
        count = lambda name: float((re.search(rf'{name}{{route="caption"}} (\S+)', text) or [0, 0])[1])  # noqa: E731
        return count("opt_batches_total"), count("opt_batch_rows_total")


async def load_run(base: str, images: list, clients: int, requests: int = 0, seconds: float = 0.0) -> dict:
    """`clients` clients, each one request at a time, until `requests` are sent (or `seconds` have passed)."""
    import httpx
    payloads = [Path(f).read_bytes() for f in images]
    latencies, statuses, sent = [], [], 0
    deadline = time.perf_counter() + seconds if seconds else None

    async def client(http):
        nonlocal sent
        while (sent < requests) if not deadline else (time.perf_counter() < deadline):
            i, sent = sent, sent + 1
            started = time.perf_counter()
            try:
                response = await http.post(f"{base}/caption", files={"image": ("x.png", payloads[i % len(payloads)])})
                statuses.append(response.status_code)
            except httpx.HTTPError:
                statuses.append(0)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=clients)) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    ok = [t for t, s in zip(latencies, statuses) if s == 200]
    return {"clients": clients, "sent": sent, "answered": len(ok), "failed": len(statuses) - len(ok),
            "lost": sent - len(statuses), "per_s": len(ok) / elapsed,
            "p50": float(np.quantile(ok, 0.5)) if ok else None, "p99": float(np.quantile(ok, 0.99)) if ok else None}


def bench_server(bundle: str, images: list, clients: list, requests: int, max_batch: int) -> list:
    rows = []
    with Server(bundle, max_batch) as server:
        for n in clients:
            before = server.batches()
            row = asyncio.run(load_run(server.base, images, n, requests=requests))
            after = server.batches()
            row.update(max_batch=max_batch, mean_batch=(after[1] - before[1]) / max(1.0, after[0] - before[0]))
            rows.append(row)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--images", required=True, help="a folder of images")
    ap.add_argument("--api-images", type=int, default=64)
    ap.add_argument("--processes", type=int, default=8)
    ap.add_argument("--clients", default="1,4,16,64")
    ap.add_argument("--requests", type=int, default=64, help="captions per client count")
    ap.add_argument("--soak-seconds", type=float, default=120.0)
    ap.add_argument("--soak-clients", type=int, default=32)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    images = images_of(args.images, max(args.api_images, args.requests))
    results = {"api": bench_api(args.bundle, images[:args.api_images], args.processes)}
    print(f"api: {results['api']['api_images_per_s']:.2f} images/s; a process per image "
          f"{results['api']['process_images_per_s']:.3f} images/s; {results['api']['ratio']:.1f}x")
    clients = [int(c) for c in args.clients.split(",")]
    results["server"] = bench_server(args.bundle, images, clients, args.requests, 16)
    results["server_batch_1"] = bench_server(args.bundle, images, clients, args.requests, 1)
    print("| batch | clients | captions/s | p50 s | p99 s | p99/p50 | mean batch | failed |")
    print("|---|---|---|---|---|---|---|---|")
    for row in results["server"] + results["server_batch_1"]:
        print(f"| {row['max_batch']} | {row['clients']} | {row['per_s']:.2f} | {row['p50']:.2f} | {row['p99']:.2f} | "
              f"{row['p99'] / row['p50']:.2f} | {row['mean_batch']:.1f} | {row['failed']} |")
    if args.soak_seconds > 0:
        with Server(args.bundle, 16) as server:
            results["soak"] = asyncio.run(load_run(server.base, images, args.soak_clients,
                                                   seconds=args.soak_seconds))
        soak = results["soak"]
        print(f"soak: {args.soak_clients} clients for {args.soak_seconds:g} s: {soak['sent']} sent, {soak['answered']} "
              f"answered, {soak['failed']} failed, {soak['lost']} lost")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
