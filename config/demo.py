"""`make demo`: the demo store on the embedded PostgreSQL and Valkey, with one Celery worker.

Migrates, creates an admin user, loads the generated demo catalog (or ``--catalog PATH``: a CSV file, a
folder or a ZIP of photos), starts a Celery worker that embeds the images and gunicorn serving the store on
http://127.0.0.1:8000 until Ctrl-C or SIGTERM, which stop everything it started.

Every process it starts runs in its own session, so a Ctrl-C in the terminal reaches only this one, which
then sends each child one SIGTERM (Celery's warm shutdown, gunicorn's graceful stop). Their process groups
are recorded in ``var/demo-<port>.json``: ``python -m config.demo stop`` (part of ``make stop``) ends whatever
a demo left behind, however it ended.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config import embedded

ROOT = Path(__file__).resolve().parent.parent
ENCODER_FALLBACK_FILE = "demo-encoder-fallback.json"
PASSWORD_FILE = "demo-admin-password.txt"
STOP_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 120.0
FALLBACK_ENCODER = {"LOOKALIKE_ENCODER": "efficientnet_lite0", "LOOKALIKE_WEIGHTS": "DEFAULT"}


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


class Stop(Exception):
    """SIGTERM or SIGHUP: leave the main loop and clean up, as Ctrl-C does."""


def _stop_on_signal(signum: int, frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


# --- encoder ------------------------------------------------------------------------------------------------


def choose_encoder() -> dict[str, str]:
    """The configured encoder if its weights can be had, else the bundled offline one (said in one line).

    A failed download is remembered in ``var/demo-encoder-fallback.json``: later starts go straight to the
    fallback instead of waiting for the same failure (delete the file to try again)."""
    from recommendations.conf import app_setting
    from recommendations.encoders import EncoderWeightsUnavailable, build_encoder

    key, weights = app_setting("ENCODER"), app_setting("WEIGHTS")
    remembered = embedded.VAR_DIR / ENCODER_FALLBACK_FILE
    try:
        failed = json.loads(remembered.read_text())
    except (OSError, ValueError):
        failed = {}
    if failed.get("encoder") == key and failed.get("weights") == weights:
        say(
            f"Encoder: efficientnet_lite0 (bundled), since the {key} weights could not be downloaded on "
            f"{failed.get('when', 'an earlier start')}; delete {remembered} to try again"
        )
        return dict(FALLBACK_ENCODER)
    try:
        build_encoder(key, weights=weights, device="cpu")
    except EncoderWeightsUnavailable as exc:
        reason = str(exc).split(". To fix it", 1)[0]
        remembered.write_text(
            json.dumps(
                {"encoder": key, "weights": weights, "when": time.strftime("%Y-%m-%d"), "reason": reason}
            )
        )
        say(f"Encoder: efficientnet_lite0 (bundled), since the {key} weights cannot be downloaded: {reason}")
        return dict(FALLBACK_ENCODER)
    say(f"Encoder: {key} ({weights} weights)")
    return {}


# --- data ---------------------------------------------------------------------------------------------------


def demo_secret_key() -> str:
    """A random key of this checkout's own, kept under var/ so that sessions survive a restart."""
    key_file = embedded.VAR_DIR / "demo-secret-key.txt"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def ensure_admin() -> tuple[str, str, Path | None]:
    """The demo's superuser; its generated password is kept in ``var/demo-admin-password.txt``."""
    from django.contrib.auth import get_user_model

    username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
    password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
    password_file = None
    if not password:
        password_file = embedded.VAR_DIR / PASSWORD_FILE
        if not password_file.exists():
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(secrets.token_urlsafe(12))
            password_file.chmod(0o600)
        password = password_file.read_text().strip()
    user, _ = get_user_model().objects.get_or_create(
        username=username, defaults={"email": f"{username}@localhost"}
    )
    user.is_staff = user.is_superuser = True
    user.set_password(password)
    user.save()
    return username, password, password_file


def load_catalog(catalog: str | None) -> None:
    from django.core.management import call_command

    if catalog:
        say(f"Importing your catalog from {catalog}")
        call_command("import_catalog", catalog, "--store", Path(catalog).stem or "My store", "--sync")
        return
    from shop.demo_catalog import generate_demo_catalog
    from shop.models import Store
    from shop.services import DEMO_STORE_NAME, load_demo_catalog

    if Store.objects.filter(name=DEMO_STORE_NAME, products__isnull=False).exists():
        say("Demo catalog already loaded")
        return
    started = time.monotonic()
    store = load_demo_catalog(generate_demo_catalog())
    say(f"Demo catalog: {store.products.count()} products generated in {time.monotonic() - started:.1f}s")


def embedding_counts() -> tuple[int, int, int, bool] | None:
    """(embedded, failed, total, active) of the space being filled (the newest live one), or None."""
    from recommendations import services
    from recommendations.models import EmbeddingSpace, ImageEmbedding

    spaces = services.live_spaces()  # the active one first, then any being built
    if not spaces:
        return None
    space = spaces[-1]
    rows = ImageEmbedding.objects.filter(space=space)
    failed = rows.filter(status=ImageEmbedding.Status.FAILED).count()
    total = services.embeddable_images().count()
    return rows.count() - failed, failed, total, space.state == EmbeddingSpace.State.ACTIVE


# --- processes ----------------------------------------------------------------------------------------------


def web_workers() -> int:
    """gunicorn's rule of thumb, 2 × cores + 1, capped: each worker holds one database connection."""
    return min(2 * (os.cpu_count() or 1) + 1, 9)


@dataclass
class Child:
    name: str
    process: subprocess.Popen

    def stop(self) -> None:
        """One SIGTERM to the main process: its own children are its business (Celery's pool, gunicorn's
        workers); a second signal would be Celery's cold shutdown."""
        if self.process.poll() is None:
            self.process.terminate()


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc: a zombie whose parent never reaps it
    still answers kill(pid, 0)."""
    if not Path("/proc/self/stat").exists():  # no procfs (macOS): ask the kernel about the group as a whole
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _end_groups(pgids: list[int], timeout_s: float, *, children: Sequence[Child] = ()) -> None:
    """Wait for the process groups to end (reaping our own children), then kill what is left of them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in children:
            child.process.poll()
        if not any(group_members(pgid) for pgid in pgids):
            return
        time.sleep(0.2)
    for pgid in pgids:
        if group_members(pgid):
            say(f"Process group {pgid} did not stop within {timeout_s:.0f}s: killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(timeout=5)


def state_path(port: int) -> Path:
    return embedded.VAR_DIR / f"demo-{port}.json"


def _write_state(port: int, state: dict) -> None:
    tmp = state_path(port).with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(state_path(port))


def stop_leftovers(paths: list[Path] | None = None) -> bool:
    """End what the recorded demos started (a demo may have been killed before it could); True if any ran.
    Without ``paths``: every demo of this var directory."""
    stopped = False
    for path in paths if paths is not None else sorted(embedded.VAR_DIR.glob("demo-*.json")):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        demo_pid = int(state.get("pid", 0))
        if demo_pid and demo_pid != os.getpid() and embedded._pid_alive(demo_pid):
            os.kill(demo_pid, signal.SIGTERM)  # it stops its children itself, then exits
            stopped = True
        running = [int(pgid) for pgid in state.get("groups", []) if group_members(int(pgid))]
        for pgid in running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pgid, signal.SIGTERM)  # each child leads its group: its pid is the group id
        _end_groups(running, STOP_TIMEOUT_S)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while demo_pid and embedded._pid_alive(demo_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        path.unlink(missing_ok=True)
        stopped = stopped or bool(running)
    return stopped


def wait_until_serving(url: str, process: subprocess.Popen) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False


def watch_embeddings(on_ready: threading.Event, stopping: threading.Event, credentials: str) -> None:
    """Say how far the embedding is, then "Embeddings ready" (and the credentials again) once it is done."""
    from django.db import connection

    started, last_said = time.monotonic(), 0.0
    try:
        while not stopping.is_set():
            counts = embedding_counts()
            if counts is not None:
                embedded_count, failed, total, active = counts
                if embedded_count + failed >= total and active:
                    say(
                        f"Embeddings ready: {embedded_count:,} images embedded"
                        + (f", {failed:,} failed" if failed else "")
                        + f" ({time.monotonic() - started:.0f}s). Similar items are on the product pages."
                    )
                    on_ready.set()
                    print(credentials, flush=True)
                    return
                if time.monotonic() - last_said >= 15:
                    say(f"Embedding the catalog: {embedded_count + failed:,} of {total:,} images")
                    last_said = time.monotonic()
            stopping.wait(2)
    finally:
        connection.close()


# --- main ---------------------------------------------------------------------------------------------------


def credentials_block(*, port: int, username: str, password: str, password_file: Path | None) -> str:
    where = f" (kept in {password_file})" if password_file else ""
    return (
        f"\n  Store:  http://127.0.0.1:{port}/\n"
        f"  Admin:  http://127.0.0.1:{port}/admin/   user {username!r}, password {password!r}{where}\n"
        f"  API:    http://127.0.0.1:{port}/api/docs/\n"
        "  Ctrl-C stops the store, the worker and the embedded servers this demo started.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", nargs="?", choices=["run", "stop"], default="run")
    parser.add_argument(
        "--catalog", help="a CSV file, a folder of photos or a ZIP to import instead of the demo"
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
    parser.add_argument("--no-serve", action="store_true", help="set everything up, then exit")
    args = parser.parse_args(argv)
    if args.command == "stop":
        print(f"demo: {'stopped' if stop_leftovers() else 'was not running'}")
        return 0

    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGHUP, _stop_on_signal)
    try:
        previous = json.loads(state_path(args.port).read_text())
    except (OSError, ValueError):
        previous = {}
    if previous and embedded._pid_alive(int(previous.get("pid", 0))):
        say(f"A demo (pid {previous['pid']}) already serves port {args.port}: stop it, or use --port")
        return 1
    stop_leftovers([state_path(args.port)])  # what a demo killed earlier on this port left running
    # The embedded servers are stopped at the end only if this demo started them.
    ours = [
        name
        for name, state in embedded.status().items()
        if state is None and not os.environ.get("DATABASE_URL" if name == "postgres" else "REDIS_URL")
    ]
    children: list[Child] = []
    stopping = threading.Event()
    try:
        return _run(args, children, stopping)
    except (KeyboardInterrupt, Stop) as reason:
        say(f"Stopping ({reason or 'Ctrl-C'})")
        return 0
    finally:
        stopping.set()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in children:
            child.stop()
        _end_groups([child.process.pid for child in children], STOP_TIMEOUT_S, children=children)
        if children:
            state_path(args.port).unlink(missing_ok=True)
        for name in ours:
            if embedded.stop(name):
                say(f"Stopped the embedded {name}")
        say("Stopped")


def _run(args: argparse.Namespace, children: list[Child], stopping: threading.Event) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # The settings default to production; the demo runs on this machine only and turns development on.
    os.environ.setdefault("DJANGO_DEBUG", "true")
    os.environ.setdefault("DJANGO_SERVE_MEDIA", "true")  # gunicorn serves the photos too (config/media.py)
    os.environ.setdefault("DJANGO_SECRET_KEY", demo_secret_key())
    say("Starting the embedded PostgreSQL and Valkey (or using DATABASE_URL / REDIS_URL)")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    say("Migrating the database")
    call_command("migrate", interactive=False, verbosity=0)
    encoder_env = choose_encoder()
    os.environ.update(encoder_env)
    username, password, password_file = ensure_admin()
    load_catalog(args.catalog)
    connection.close()  # the children open their own

    child_env = {**os.environ, **encoder_env}
    python = sys.executable
    state: dict[str, Any] = {"pid": os.getpid(), "groups": []}

    def start(name: str, command: list[str]) -> Child:
        # A session of its own: the terminal's Ctrl-C goes to this process only, which stops the child once.
        process = subprocess.Popen(command, cwd=ROOT, env=child_env, start_new_session=True)
        child = Child(name, process)
        children.append(child)
        state["groups"].append(process.pid)
        _write_state(args.port, state)
        return child

    say("Starting a Celery worker (queues default, scrape, embeddings)")
    start(
        "worker",
        [
            python,
            "-m",
            "celery",
            "--quiet",
            "-A",
            "config",
            "worker",
            "-Q",
            "default,scrape,embeddings",
            "-c",
            "2",
        ]
        + ["-n", f"demo-{os.getpid()}@%h", "-l", "warning", "--without-gossip", "--without-mingle"],
    )
    say("Queueing the embedding of the catalog")
    subprocess.run([python, "manage.py", "embed_catalog", "--async"], cwd=ROOT, env=child_env, check=False)
    if args.no_serve:
        return 0
    workers = web_workers()
    say(f"Starting gunicorn with {workers} workers on 127.0.0.1:{args.port}")
    web = start(
        "web",
        [python, "-m", "gunicorn", "config.demo_wsgi:application", "--bind", f"127.0.0.1:{args.port}"]
        + ["--workers", str(workers), "--timeout", "120", "--graceful-timeout", "20"]
        + ["--log-level", "warning"],
    )
    credentials = credentials_block(
        port=args.port, username=username, password=password, password_file=password_file
    )
    if not wait_until_serving(f"http://127.0.0.1:{args.port}/", web.process):
        say("The web server did not answer: see its output above")
        return 1
    ready = threading.Event()
    threading.Thread(
        target=watch_embeddings, args=(ready, stopping, credentials), name="embedding-progress", daemon=True
    ).start()
    say("The store is up; similar items appear on product pages once the embedding is done")
    print(credentials, flush=True)
    while all(child.process.poll() is None for child in children):
        time.sleep(0.5)
    failed = next(child for child in children if child.process.poll() is not None)
    say(f"The {failed.name} process exited with status {failed.process.returncode}: stopping the demo")
    return 1


if __name__ == "__main__":
    sys.exit(main())
