"""A throw-away benchmark database: created with the project's migrations, dropped at the end.

    from bench._database import benchmark_database
    with benchmark_database("similar"):
        ...  # Django is set up and connected to bench_similar_<pid>

Never touches the development database ``lookalike``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django(name: str) -> None:
    """Point the test settings at ``bench_<name>_<pid>`` and set Django up (before any model import)."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
    os.environ.setdefault("LOOKALIKE_TEST_DB", f"bench_{name}_{os.getpid()}")
    import django

    django.setup()


@contextlib.contextmanager
def benchmark_database(name: str, *, keep: bool = False) -> Iterator[None]:
    setup_django(name)
    from django.db import connection

    original = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    print(f"database: {connection.settings_dict['NAME']} (created for this run)")
    try:
        yield
    finally:
        if keep:
            print(f"kept database {connection.settings_dict['NAME']}")
        else:
            connection.creation.destroy_test_db(original, verbosity=0)


def raw_connection():  # -> psycopg.Connection (imported lazily)
    """A separate psycopg connection to the benchmark database, with pgvector's binary types registered."""
    import psycopg
    from django.db import connection
    from pgvector.psycopg import register_vector

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    raw = psycopg.connect(**params, autocommit=True)
    register_vector(raw)
    return raw


def percentile_ms(samples_s: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(samples_s) * 1000.0, q))
