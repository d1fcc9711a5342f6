"""Serve bundles (or runs) over HTTP: the entry behind scripts/serve.sh.

    python -m src.serve BUNDLE [BUNDLE ...] [--port 8000] [--host 127.0.0.1] [--index INDEX] [--max-batch 16]
                        [--window-ms 10] [--queue 64] [--timeout 30] [--max-body-mb 10] [--max-audio-seconds 30]

Each bundle's task brings its routes (src/serve/app.py); --index names the search index /search asks (made with
infer.py --gallery ... --index). SIGTERM or Ctrl-C stops taking requests and answers those in flight first, then the
process ends by that signal (status 143 or 130 in a shell); 2 is a bundle or index that cannot be served (one line).
"""
from __future__ import annotations

import argparse
import sys

from src.cli import USER_ERRORS
from src.commands import run_main


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="scripts/serve.sh", description=__doc__.split("\n")[0])
    p.add_argument("bundles", nargs="+", help="bundle folders (export.py --out) or run directories")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--index", default=None, help="the search index /search asks")
    p.add_argument("--max-batch", type=int, default=16, help="requests per model call")
    p.add_argument("--window-ms", type=float, default=10.0, help="how long a batch waits for more requests")
    p.add_argument("--queue", type=int, default=64, help="requests waiting per route; more are answered 503")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds a request may take")
    p.add_argument("--max-body-mb", type=float, default=10.0, help="the largest request body")
    p.add_argument("--max-audio-seconds", type=float, default=30.0, help="the longest recording taken")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    def run() -> int:
        import uvicorn
        from src.api import load
        from src.serve.app import Limits, build_app
        from pathlib import Path
        if args.index and not (Path(args.index) / "index.json").is_file():
            raise FileNotFoundError(f"no search index at {args.index} (make one with infer.py --gallery ... --index)")
        limits = Limits(max_body=int(args.max_body_mb * 2**20), max_audio_seconds=args.max_audio_seconds,
                        timeout=args.timeout, queue=args.queue, window=args.window_ms / 1000, max_batch=args.max_batch)
        app = build_app([load(b) for b in args.bundles], args.index, limits)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=args.timeout)
        return 0
    return run_main(run, USER_ERRORS + (ValueError,))


if __name__ == "__main__":
    sys.exit(main())
