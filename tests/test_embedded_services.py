"""The embedded PostgreSQL and Valkey: started once, shared between processes, stopped on request."""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import redis

from config.embedded import shared_buffers_mb

ROOT = Path(__file__).resolve().parent.parent


def run_embedded(var_dir: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["LOOKALIKE_VAR_DIR"] = str(var_dir)
    result = subprocess.run(
        [sys.executable, "-m", "config.embedded", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_two_processes_share_one_server_per_data_dir_and_stop_stops_them(tmp_path):
    var_dir = tmp_path / "var"
    # Two processes race to start the servers on the same data directories.
    with ThreadPoolExecutor(2) as pool:
        outputs = list(pool.map(lambda _: run_embedded(var_dir, "start"), range(2)))
    assert outputs[0] == outputs[1], "both processes must see the same servers (same pids and ports)"

    state = json.loads((var_dir / "postgres.json").read_text())
    valkey_state = json.loads((var_dir / "valkey.json").read_text())
    with psycopg.connect(host=state["host"], port=state["port"], user="postgres", dbname="lookalike") as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        # Postgres's cache is sized to the machine, so that a large catalog's HNSW index can live in it.
        buffers_mb = conn.execute(
            "select setting::bigint * 8 / 1024 from pg_settings where name = 'shared_buffers'"
        ).fetchone()[0]
        assert buffers_mb == shared_buffers_mb()
        assert 128 <= buffers_mb <= 8192
    assert redis.Redis(host=valkey_state["host"], port=valkey_state["port"]).ping()

    # A third start reuses the running servers rather than starting new ones.
    assert run_embedded(var_dir, "start") == outputs[0]

    stopped = run_embedded(var_dir, "stop")
    assert "postgres: stopped" in stopped and "valkey: stopped" in stopped
    assert "not running" in run_embedded(var_dir, "status")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(
            host=state["host"], port=state["port"], user="postgres", dbname="lookalike", connect_timeout=2
        )

    # Data survives a restart: the cluster is initialised once.
    run_embedded(var_dir, "start")
    assert (var_dir / "postgres" / "PG_VERSION").exists()
    run_embedded(var_dir, "stop")


def test_unusable_data_directory_gives_a_clear_error(tmp_path):
    var_dir = tmp_path / "var"
    (var_dir / "postgres").mkdir(parents=True)
    (var_dir / "postgres" / "stray-file").write_text("not a cluster")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["LOOKALIKE_VAR_DIR"] = str(var_dir)
    result = subprocess.run(
        [sys.executable, "-c", "from config import embedded; embedded.ensure_postgres()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "is not empty but holds no PostgreSQL cluster" in result.stderr


@pytest.mark.slow
def test_a_restarted_server_keeps_its_port_so_running_clients_reconnect(tmp_path):
    var_dir = tmp_path / "var"
    run_embedded(var_dir, "start")
    postgres = json.loads((var_dir / "postgres.json").read_text())
    valkey = json.loads((var_dir / "valkey.json").read_text())
    broker = redis.Redis(host=valkey["host"], port=valkey["port"])
    assert broker.set("survives", "no") and broker.ping()

    try:
        run_embedded(var_dir, "stop")
        with pytest.raises(redis.ConnectionError):
            broker.ping()
        run_embedded(var_dir, "start")
        restarted_postgres = json.loads((var_dir / "postgres.json").read_text())
        restarted_valkey = json.loads((var_dir / "valkey.json").read_text())
        assert restarted_postgres["pid"] != postgres["pid"] and restarted_valkey["pid"] != valkey["pid"]
        assert restarted_postgres["port"] == postgres["port"]
        assert restarted_valkey["port"] == valkey["port"]

        # The client made before the restart, with the address it had, works again without being rebuilt.
        assert broker.ping()
        with psycopg.connect(
            host=postgres["host"], port=postgres["port"], user="postgres", dbname="lookalike"
        ) as conn:
            assert conn.execute("select 1").fetchone() == (1,)

        # A server that died without `stop` (its state file left behind) comes back on its port too.
        os.kill(restarted_valkey["pid"], 9)
        run_embedded(var_dir, "start")
        assert json.loads((var_dir / "valkey.json").read_text())["port"] == valkey["port"]
        assert broker.ping()
    finally:
        run_embedded(var_dir, "stop")


def test_a_taken_port_moves_the_server_to_a_new_one(tmp_path):
    import socket

    var_dir = tmp_path / "var"
    var_dir.mkdir()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        (var_dir / "valkey.port").write_text(str(taken))
        env = {**os.environ, "LOOKALIKE_VAR_DIR": str(var_dir)}
        code = "from config import embedded; print(embedded.ensure_valkey().port)"
        try:
            result = subprocess.run(
                [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
            )
            assert result.returncode == 0, result.stderr
            assert int(result.stdout) != taken
            assert "is taken by another program" in result.stderr
            assert int((var_dir / "valkey.port").read_text()) == int(result.stdout)
        finally:
            run_embedded(var_dir, "stop")
