"""Shared fixtures: real PostgreSQL + pgvector, a real Valkey broker, a real Celery worker, a real browser."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("LOOKALIKE_DATA_DIR", ROOT.parent / "shared" / "data"))
CHROMIUM = os.environ.get("LOOKALIKE_CHROMIUM", "/usr/bin/chromium")


def pytest_report_header(config) -> list[str]:
    lines = [f"data: {DATA_DIR} ({'found' if DATA_DIR.exists() else 'MISSING: data-driven tests skip'})"]
    if not Path(CHROMIUM).exists():
        lines.append(
            f"!!! {CHROMIUM} not found: BROWSER TESTS WILL BE SKIPPED (apt-get install -y chromium) !!!"
        )
    return lines


def pytest_collection_modifyitems(config, items) -> None:
    if Path(CHROMIUM).exists():
        return
    skip = pytest.mark.skip(
        reason=f"browser test skipped: no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    )
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not Path(CHROMIUM).exists():
        terminalreporter.write_line(
            f"WARNING: browser tests were SKIPPED because {CHROMIUM} is missing "
            "(apt-get install -y chromium).",
            red=True,
            bold=True,
        )


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.exists():
        pytest.skip(f"LOOKALIKE_DATA_DIR {DATA_DIR} not found")
    return DATA_DIR


@pytest.fixture(scope="session", autouse=True)
def _media_root() -> Iterator[None]:
    from django.conf import settings

    Path(settings.MEDIA_ROOT).mkdir(parents=True, exist_ok=True)
    yield
    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)


REQUEST_FIXTURES = {"client", "admin_client", "live_server", "async_client", "db", "transactional_db"}


@pytest.fixture(autouse=True)
def _fresh_rate_limits(request) -> None:
    """All of a run's requests come from 127.0.0.1: each test that may send some (it uses the database or a
    client) starts with no requests counted against the per-address rate limits and no failed logins.

    It also starts with the storefront's cached listings stale: their keys (category and page) are the same
    in every test, and only a committed save makes them stale, which a test in a rolled-back transaction
    never does, so a listing of an earlier test's catalog would be served."""
    if not (REQUEST_FIXTURES & set(request.fixturenames) or request.node.get_closest_marker("django_db")):
        return
    from django.core.cache import cache

    from shop import storefront_cache

    valkey = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    for pattern in ("rl:*", "login-failures:*"):
        keys = list(valkey.scan_iter(match=cache.make_key(pattern), count=1000))
        if keys:
            valkey.delete(*keys)
    storefront_cache.bump_version()


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker) -> Iterator[subprocess.Popen]:
    """A real Celery worker process on the real broker, connected to the test database.

    Tests that use it must commit their data (``transactional_db``) so that the worker can see it.
    """
    from config.celery import ping

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test", "LOOKALIKE_USE_TEST_DB": "1"}
    log_path = Path(os.environ.get("LOOKALIKE_WORKER_LOG", f"/tmp/lookalike-test-worker-{os.getpid()}.log"))
    log = open(log_path, "w")  # noqa: SIM115 - kept open for the worker's lifetime
    run_id = os.environ["LOOKALIKE_TEST_RUN_ID"]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            "default,scrape,embeddings",
            "-c",
            "2",
            "-n",
            f"test-{run_id}@%h",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "info",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                assert ping.apply_async(args=["ready"]).get(timeout=10) == "ready"
                break
            except Exception as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"Celery worker did not start; log: {log_path}\n{log_path.read_text()[-3000:]}"
                    ) from exc
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's Chromium driven by Playwright (no browser download)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield instance
        instance.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def store(db):
    from shop.models import Store

    return Store.objects.create(name="Test store", base_url="https://store.example", currency="EUR")


@pytest.fixture
def make_product(store):
    """Create a product with one generated image file (a solid colour square)."""
    from tests.factories import create_product

    def make(**kwargs):
        kwargs.setdefault("store", store)
        return create_product(**kwargs)

    return make
