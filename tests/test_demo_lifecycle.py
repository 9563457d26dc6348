"""`make demo`'s life cycle: it serves, says when the embeddings are ready, holds 200 concurrent requests,
and leaves nothing running when it is stopped with SIGTERM or Ctrl-C, or killed and cleaned up with
`make stop`.

The demo runs on its own data directory (LOOKALIKE_VAR_DIR), port and media folder, with its own embedded
PostgreSQL and Valkey, so the servers shared by other test runs are never touched.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from config.demo import group_members
from tests.factories import jpeg_bytes

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Demo:
    """One `python -m config.demo` process with its output collected line by line."""

    def __init__(self, *, var_dir: Path, catalog: Path, port: int) -> None:
        self.var_dir, self.port = var_dir, port
        environment = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("LOOKALIKE_", "DJANGO_", "CELERY_", "CACHE_"))
            and name not in ("DATABASE_URL", "REDIS_URL", "MEDIA_ROOT")
        }
        environment.update(
            LOOKALIKE_VAR_DIR=str(var_dir),
            MEDIA_ROOT=str(var_dir / "media"),
            LOOKALIKE_ENCODER="efficientnet_lite0",  # no download attempt
            DJANGO_SETTINGS_MODULE="config.settings",
            DJANGO_DEBUG="1",
            PYTHONUNBUFFERED="1",
        )
        self.environment = environment
        self.lines: list[str] = []
        # Ctrl-C with its default action, as in a terminal. A test run started in the background (`make test
        # &`, a CI runner) ignores SIGINT, and an ignored signal stays ignored in the child: the demo would
        # then, rightly for a background job, not stop on Ctrl-C.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "config.demo", "--port", str(port), "--catalog", str(catalog)],
                cwd=ROOT,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # a process group of its own, as a terminal gives `make demo`
            )
        finally:
            signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def close(self) -> None:
        """After the process ended: the rest of its output, and its pipe closed.

        A child that outlived the demo may still hold the pipe open; closing it then would wait for the
        reader forever, so it is left to the reader, which ends when the last child is stopped.
        """
        self.reader.join(timeout=10)
        assert self.process.stdout is not None
        if not self.reader.is_alive():
            self.process.stdout.close()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while text not in self.output:
            recent = self.output[-4000:]
            assert self.process.poll() is None, f"the demo exited:\n{recent}"
            assert time.monotonic() < deadline, f"no {text!r} within {START_TIMEOUT_S}s:\n{recent}"
            time.sleep(0.5)

    def started_pids(self) -> set[int]:
        """Every live process the demo started: itself, its children's groups, the embedded servers."""
        state = json.loads((self.var_dir / f"demo-{self.port}.json").read_text())
        pids = {self.process.pid}
        for pgid in state["groups"]:
            pids |= set(group_members(int(pgid)))
        for server in ("postgres", "valkey"):
            pids.add(json.loads((self.var_dir / f"{server}.json").read_text())["pid"])
        return pids

    def exit_code(self, timeout: float = 120) -> int:
        """The demo's exit code once it ends; if it does not, fails with its output and what still runs."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                still = describe(alive(self.started_pids()))
            except OSError as error:  # the demo's state file is gone
                still = f"(unknown: {error})"
            pytest.fail(
                f"the demo did not end within {timeout}s; still running:\n{still}\n{self.output[-4000:]}"
            )

    def run(self, *arguments: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", *arguments], cwd=ROOT, env=self.environment, capture_output=True, text=True
        )
        return done.stdout + done.stderr


def alive(pids: set[int]) -> set[int]:
    """The pids still running (zombies waiting for a parent to reap them count as ended)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            running.add(pid)
    return running


def describe(pids: set[int]) -> str:
    lines = []
    for pid in sorted(pids):
        try:
            lines.append(f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            lines.append(f"{pid}: gone")
    return "\n".join(lines)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def get(url: str) -> tuple[int, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=120) as response:
        response.read()
        return response.status, dict(response.headers)


@pytest.fixture
def demo_dirs():
    # Not pytest's tmp_path: its numbered folders are pruned by other pytest runs of the same user, which
    # would pull the data directory from under the demo's PostgreSQL.
    base = Path(tempfile.mkdtemp(prefix="lookalike-demo-"))
    var_dir = base / "var"
    catalog = base / "catalog" / "Sunglasses"
    (catalog / "round").mkdir(parents=True)
    for i, colour in enumerate([(200, 30, 30), (30, 30, 200), (30, 160, 60), (220, 180, 40)]):
        (catalog / "round" / f"frame-{i}.jpg").write_bytes(jpeg_bytes(colour, 96))
    yield var_dir, catalog
    # Whatever happened, leave nothing of this demo running.
    environment = {**os.environ, "LOOKALIKE_VAR_DIR": str(var_dir)}
    for command in (["config.demo", "stop"], ["config.embedded", "stop"]):
        subprocess.run([sys.executable, "-m", *command], cwd=ROOT, env=environment, capture_output=True)
    shutil.rmtree(base, ignore_errors=True)


def test_demo_serves_then_sigterm_ctrl_c_and_make_stop_leave_nothing_running(demo_dirs):
    var_dir, catalog = demo_dirs
    port = free_port()
    demo = Demo(var_dir=var_dir, catalog=catalog, port=port)
    try:
        demo.wait_for("Embeddings ready")
        time.sleep(1)
        # The credentials come last: when the site is up, and again after "Embeddings ready".
        tail = demo.output[demo.output.rindex("Embeddings ready") :]
        assert "Admin:" in tail and "demo-admin-password.txt" in tail
        assert demo.output.count("password") >= 2

        base = f"http://127.0.0.1:{port}"
        assert get(f"{base}/")[0] == 200
        assert get(f"{base}/static/shop/store.css")[0] == 200
        image = next((var_dir / "media").rglob("*.jpg")).relative_to(var_dir / "media")
        status, headers = get(f"{base}/media/{image}")
        assert status == 200 and headers["X-Content-Type-Options"] == "nosniff"
        # 200 requests at once (product pages, the similar-items API, the home page): none fails.
        paths = ["/", "/api/products/1/similar/", "/products/1/", "/for-you/"]

        def fetch(i: int) -> object:
            try:
                return get(base + paths[i % len(paths)])[0]
            except Exception as error:  # any failure is counted, whatever it is
                return repr(error)

        with concurrent.futures.ThreadPoolExecutor(200) as pool:
            outcomes = collections.Counter(pool.map(fetch, range(400)))
        assert outcomes == {200: 400}

        started = demo.started_pids()
        assert len(alive(started)) >= 6  # demo, worker (+ pool), gunicorn (+ workers), postgres, valkey
        demo.process.send_signal(signal.SIGTERM)
        assert demo.exit_code() == 0
        time.sleep(0.5)
        assert alive(started) == set(), describe(alive(started)) + "\n" + demo.output[-3000:]
        assert not port_open(port)
        assert not (var_dir / f"demo-{port}.json").exists()
        demo.close()
        assert "Cold shutdown" not in demo.output and demo.output.rstrip().endswith("==> Stopped")

        # Ctrl-C in a terminal sends SIGINT to the whole foreground process group: the worker must get one
        # signal (a warm shutdown), not the terminal's SIGINT and then the demo's SIGTERM (a cold one).
        demo = Demo(var_dir=var_dir, catalog=catalog, port=port)
        demo.wait_for("The store is up")
        started = demo.started_pids()
        os.killpg(demo.process.pid, signal.SIGINT)
        assert demo.exit_code() == 0
        demo.close()
        assert alive(started) == set(), describe(alive(started)) + "\n" + demo.output[-3000:]
        assert demo.output.count("Warm shutdown") == 1 and "Cold shutdown" not in demo.output

        # Killed outright, the demo cannot clean up: `make stop` (these two commands) must.
        demo = Demo(var_dir=var_dir, catalog=catalog, port=port)
        demo.wait_for("The store is up")
        started = demo.started_pids()
        demo.process.kill()
        demo.process.wait(timeout=10)
        assert alive(started - {demo.process.pid}), "the children outlive a killed demo"
        assert "demo: stopped" in demo.run("config.demo", "stop")
        demo.run("config.embedded", "stop")
        assert alive(started) == set(), describe(alive(started))
        assert not port_open(port)
    finally:
        # The demo's whole process group (it and the children it started), so that a failure above ends
        # here with its message instead of waiting on a child that holds the output pipe.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(demo.process.pid, signal.SIGKILL)
        demo.process.wait(timeout=10)
        demo.close()
