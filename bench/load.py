"""Throughput and tail latency of the public pages under 200 concurrent clients, against the production-style
server (gunicorn, DEBUG off) on this machine, with a trivial Django JSON view served by the same server in
the same run as the ceiling.

    python bench/load.py [--products 10000] [--requests 2000] [--concurrency 200] [--workers 5]

Pages: the similar-items API, a product page (with its similar-items widget), a landing page and the
storefront home. Each is loaded with ``--requests`` requests, ``--concurrency`` at a time, after a warm-up;
the ceiling view is loaded before and after them and its mean is the ceiling. Goals (issue 16): ≥ 300 req/s
for similar items and landing pages, ≥ 100 req/s for the home page, p99 < 1 s, no errors, and ≥ 0.5x the
ceiling for similar items and landing pages. The client shares the machine's cores with the server and the
database, so absolute numbers are a floor; the ratio to the ceiling is the figure to compare.

The client is a bounded loop (exactly ``--requests`` per page) to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # the only address the client connects to
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--dims", type=int, default=1280, help="1280 = efficientnet_lite0")
    parser.add_argument("--requests", type=int, default=2000, help="requests per page (bounded)")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument(
        "--workers", type=int, default=2 * (os.cpu_count() or 1) + 1, help="gunicorn workers (2 x cores + 1)"
    )
    parser.add_argument(
        "--no-neighbours", action="store_true", help="skip compute_neighbours (live HNSW queries only)"
    )
    parser.add_argument("--pages", default="", help="comma-separated subset of page names to load")
    parser.add_argument(
        "--browser",
        action="store_true",
        help="send a browser's User-Agent: landing pages then record an impression per new visitor (without "
        "it the client counts as a bot, as a load tester is, and nothing is recorded)",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


args = parse_args()
sys.path.insert(0, str(ROOT))

from bench._database import benchmark_database, load_synthetic_catalog, synthetic_vectors


@dataclass
class Run:
    name: str
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0


async def _get(port: int, path: str, timeout_s: float) -> str:
    """One GET over a fresh connection (gunicorn's sync workers close it after each response); returns the
    status code, or the exception's name."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout_s)
        try:
            agent = f"User-Agent: {BROWSER_UA}\r\n" if args.browser else ""
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n{agent}Connection: close\r\n\r\n".encode())
            await writer.drain()
            response = await asyncio.wait_for(reader.read(), timeout_s)
        finally:
            writer.close()
        return response[9:12].decode(errors="replace") or "empty"
    except (OSError, TimeoutError) as error:
        return type(error).__name__


async def _load(name: str, port: int, paths: list[str], total: int, concurrency: int) -> Run:
    run = Run(name)
    next_index = 0

    async def client() -> None:
        nonlocal next_index
        while next_index < total:  # bounded: exactly `total` requests in all
            index, next_index = next_index, next_index + 1
            started = time.perf_counter()
            status = await _get(port, paths[index % len(paths)], timeout_s=30.0)
            run.latencies_s.append(time.perf_counter() - started)
            run.statuses[status] = run.statuses.get(status, 0) + 1
            if status != "200":
                run.errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    run.seconds = time.perf_counter() - started
    run.requests = total
    return run


def load(name: str, port: int, paths: list[str]) -> Run:
    # Warm-up: every path once (a cached page is measured in its steady state: the catalog's popular
    # pages are requested again and again), then a few rounds so every gunicorn worker has its connections.
    asyncio.run(_load(name, port, paths, len(paths), min(args.concurrency, 50)))
    asyncio.run(_load(name, port, paths, min(args.requests // 5, 200), args.concurrency))
    run = asyncio.run(_load(name, port, paths, args.requests, args.concurrency))
    print(
        f"  {name}: {run.rate:.0f} req/s, p50 {run.percentile_ms(50):.0f} ms, "
        f"p99 {run.percentile_ms(99):.0f} ms, errors {run.errors} {dict(sorted(run.statuses.items()))}",
        flush=True,
    )
    return run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_server(port: int) -> subprocess.Popen:
    from django.db import connection

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.load_settings",
        "LOOKALIKE_TEST_DB": connection.settings_dict["NAME"],
        "LOOKALIKE_USE_TEST_DB": "1",
        "LOG_LEVEL": "WARNING",
    }
    command = [
        sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"{HOST}:{port}",
        "--workers", str(args.workers), "--backlog", "2048", "--timeout", "60", "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if asyncio.run(_get(port, "/bench/ceiling/", timeout_s=5)) == "200":
            return server
        if server.poll() is not None:
            raise RuntimeError("gunicorn exited")
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer within 60 s")


def make_campaign(vectors, space) -> str:
    import numpy as np
    from django.utils import timezone

    from campaigns.models import Campaign, Creative

    campaign = Campaign.objects.create(
        name="Bench", slug="bench", status=Campaign.Status.LIVE, product_count=24
    )
    vector = vectors[0] + 0.5 * np.random.default_rng(args.seed).standard_normal(vectors.shape[1])
    Creative.objects.create(
        campaign=campaign,
        name="Ad",
        slug="ad",
        image="campaigns/creatives/00/bench.jpg",  # the page only prints its URL
        sha256="0" * 64,
        width=1200,
        height=628,
        space=space,
        vector=(vector / np.linalg.norm(vector)).astype(np.float32),
        embedding_status=Creative.EmbeddingStatus.READY,
        embedded_at=timezone.now(),
    )
    return campaign.slug


def run() -> None:
    from django.core.management import call_command

    from bench._common import print_hardware
    from recommendations.indexes import ensure_space_index

    print_hardware()
    print(f"gunicorn workers: {args.workers}, concurrency {args.concurrency}, {args.requests} requests/page")
    vectors = synthetic_vectors(args.products, args.dims, args.seed)
    space, product_ids, _ = load_synthetic_catalog(vectors)
    ensure_space_index(space)
    if not args.no_neighbours:
        call_command("compute_neighbours", verbosity=0)
    slug = make_campaign(vectors, space)
    products = product_ids[:: max(1, len(product_ids) // 500)]
    pages = {
        "similar items API": [f"/api/products/{pk}/similar/" for pk in products],
        "product page + widget": [f"/products/{pk}/" for pk in products],
        "landing page": [f"/c/{slug}/?utm_source=bench"],
        "storefront home": ["/"],
    }
    if args.pages:
        wanted = {name.strip() for name in args.pages.split(",")}
        pages = {name: paths for name, paths in pages.items() if name in wanted}
    port = free_port()
    server = start_server(port)
    try:
        before = load("ceiling (trivial JSON view)", port, ["/bench/ceiling/"])
        runs = [load(name, port, paths) for name, paths in pages.items()]
        after = load("ceiling again", port, ["/bench/ceiling/"])
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    ceiling = (before.rate + after.rate) / 2
    goals = {
        "similar items API": (300, 0.5),
        "product page + widget": (None, None),
        "landing page": (300, 0.5),
        "storefront home": (100, None),
    }
    print(f"\nceiling: {ceiling:.0f} req/s (before {before.rate:.0f}, after {after.rate:.0f})\n")
    print("| page | req/s | p50 ms | p99 ms | errors | ÷ ceiling | goal |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for page in runs:
        rate_goal, ratio_goal = goals[page.name]
        goal = ", ".join(
            part
            for part in (
                f"≥ {rate_goal} req/s" if rate_goal else "",
                f"≥ {ratio_goal}x" if ratio_goal else "",
                "p99 < 1 s, 0 errors",
            )
            if part
        )
        print(
            f"| {page.name} | {page.rate:.0f} | {page.percentile_ms(50):.0f} | {page.percentile_ms(99):.0f} "
            f"| {page.errors} | {page.rate / ceiling:.2f}x | {goal} |"
        )


if __name__ == "__main__":
    with benchmark_database("load"):
        run()
