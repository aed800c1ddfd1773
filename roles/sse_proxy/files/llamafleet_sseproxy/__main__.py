"""Command line: ``python3 -m llamafleet_sseproxy --listen 127.0.0.1:8080 --upstream http://127.0.0.1:8081``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from llamafleet_sseproxy.server import ProxyConfig, serve


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) into its parts."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"--listen wants HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"wants a positive number of seconds, got {value!r}")
    return number


def count(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"wants a positive whole number, got {value!r}")
    return number


def read_key(path: str) -> str:
    """The API key: the file's first line (llama-server's --api-key-file takes the same file)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"llamafleet_sseproxy: --api-key-file {path}: {exc.__class__.__name__}: {exc}") from None
    key = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not key:
        raise SystemExit(f"llamafleet_sseproxy: --api-key-file {path}: the file holds no key")
    return key


def parse_args(argv: list[str]) -> ProxyConfig:
    p = argparse.ArgumentParser(prog="python3 -m llamafleet_sseproxy", description=__doc__)
    p.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8080), help="HOST:PORT the agents use")
    p.add_argument("--upstream", default="http://127.0.0.1:8081", help="llama-server base URL (loopback)")
    p.add_argument("--keepalive", choices=("pass", "drop"), default="pass", help="SSE ':' comment events")
    p.add_argument("--split-open-brace", action="store_true", help="send a tool call's opening '{' alone")
    p.add_argument("--wait-timeout", type=positive, default=120.0, help="seconds a request waits for the upstream")
    p.add_argument("--health-path", default="/health", help="the upstream's readiness endpoint")
    p.add_argument("--poll-interval", type=positive, default=2.0, help="seconds between /health checks when ready")
    p.add_argument("--max-body", type=count, default=16 << 20, help="largest request body in bytes (413 beyond)")
    p.add_argument("--api-key-file", help="file holding the API key every request must carry (read at start)")
    p.add_argument("--max-concurrent", type=count, default=64, help="requests in flight (503 beyond)")
    p.add_argument("--max-connections", type=count, default=1024, help="open client connections")
    p.add_argument("--idle-timeout", type=positive, default=30.0, help="seconds an idle client connection is kept")
    p.add_argument(
        "--upstream-keepalive", type=positive, default=2.0, help="seconds an idle upstream connection is kept"
    )
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    a = p.parse_args(argv)
    logging.basicConfig(level=a.log_level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    host, port = a.listen
    return ProxyConfig(
        listen_host=host,
        listen_port=port,
        upstream=a.upstream,
        keepalive=a.keepalive,
        split_open_brace=a.split_open_brace,
        wait_timeout=a.wait_timeout,
        health_path=a.health_path,
        poll_ready=a.poll_interval,
        max_body=a.max_body,
        api_key=read_key(a.api_key_file) if a.api_key_file else None,
        max_concurrent=a.max_concurrent,
        max_connections=a.max_connections,
        idle_timeout=a.idle_timeout,
        upstream_keepalive=a.upstream_keepalive,
    )


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop where the host has it (the distributions package it; it halves the proxy's cost per event)."""
    try:
        import uvloop
    except ImportError:
        logging.getLogger("sseproxy").info("event loop: asyncio (install uvloop for a faster proxy)")
        asyncio.run(main)
        return
    logging.getLogger("sseproxy").info("event loop: uvloop %s", uvloop.__version__)
    if hasattr(uvloop, "run"):
        uvloop.run(main)
    else:  # uvloop before 0.18 (Debian 12)
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        asyncio.run(main)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    run(serve(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
