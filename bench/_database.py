"""A throw-away benchmark database (created with the project's migrations, dropped at the end) and a
synthetic catalog to fill it with.

    from bench._database import benchmark_database
    with benchmark_database("similar"):
        ...  # Django is set up and connected to bench_similar_<pid>

Never touches the development database ``lookalike``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_django(name: str) -> None:
    """Point the test settings at ``bench_<name>_<pid>`` and set Django up (before any model import)."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
    os.environ.setdefault("LOOKALIKE_TEST_DB", f"bench_{name}_{os.getpid()}")
    # Benchmarks send thousands of requests from one address: they measure speed, not the per-address limits.
    os.environ.setdefault("LOOKALIKE_RATE_LIMITS", "off")
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
        # The test settings give each process its own media folder under the temp dir: photos stored there.
        import shutil
        import tempfile

        from django.conf import settings

        media = Path(settings.MEDIA_ROOT)
        if media.parent == Path(tempfile.gettempdir()) and media.name.startswith("lookalike-test-media-"):
            shutil.rmtree(media, ignore_errors=True)


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


def synthetic_vectors(n: int, dims: int, seed: int):
    """Unit vectors clustered like real embeddings: n/50 "looks", each product a noisy copy of one."""
    import numpy as np

    rng = np.random.default_rng(seed)
    looks = max(10, n // 50)
    centres = rng.standard_normal((looks, dims), dtype=np.float32)
    vectors = np.empty((n, dims), dtype=np.float32)
    for start in range(0, n, 10_000):
        stop = min(n, start + 10_000)
        vectors[start:stop] = centres[rng.integers(0, looks, stop - start)]
        vectors[start:stop] += rng.standard_normal((stop - start, dims), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def load_synthetic_catalog(vectors):
    """Products (1 % in category "rare", 10 % in "tenth") and their vectors, written with COPY."""
    from pgvector import HalfVector

    from recommendations.models import EmbeddingSpace
    from shop.models import Category, Product, Store

    Product.objects.all().delete()
    EmbeddingSpace.objects.all().delete()
    store = Store.objects.get_or_create(name="Bench store")[0]
    rare, tenth, rest = (Category.from_path([name]) for name in ("Rare", "Tenth", "Rest"))
    space = EmbeddingSpace.objects.create(
        encoder="synthetic", weights_id="bench", dimensions=vectors.shape[1], state="active"
    )
    n = len(vectors)
    with raw_connection() as raw, raw.cursor() as cursor:
        columns = (
            "store_id, external_id, title, description, url, brand, price, currency, in_stock, category_id, "
            "attributes, created_at, updated_at"
        )
        with cursor.copy(f"COPY shop_product ({columns}) FROM STDIN") as copy:
            for i in range(n):
                category = rare if i % 100 == 0 else tenth if i % 10 == 5 else rest
                copy.write_row(
                    (
                        store.pk,
                        f"b{i}",
                        f"Bench product {i}",
                        "",
                        "",
                        "Acme",
                        "19.99",
                        "EUR",
                        True,
                        category.pk,
                        "{}",
                        "2026-01-01T00:00Z",
                        "2026-01-01T00:00Z",
                    )
                )
        cursor.execute("SELECT id FROM shop_product WHERE store_id = %s ORDER BY id", [store.pk])
        product_ids = [row[0] for row in cursor.fetchall()]
        with cursor.copy(
            "COPY recommendations_productembedding (space_id, product_id, vector, image_sha256s, updated_at) "
            "FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "int8", "halfvec", "varchar[]", "timestamptz"])
            stamp = datetime(2026, 1, 1, tzinfo=UTC)
            for i, product_id in enumerate(product_ids):
                copy.write_row((space.pk, product_id, HalfVector(vectors[i]), [f"{product_id:064x}"], stamp))
        cursor.execute("VACUUM ANALYZE shop_product")
        cursor.execute("VACUUM ANALYZE recommendations_productembedding")
    return space, product_ids, {"rare": rare.pk, "tenth": tenth.pk}


def settle_space(space) -> None:
    """Make the server look like one that has been answering searches for a while, before anything is
    timed: the load's and the index build's writes flushed (CHECKPOINT, then the OS's write-back), and the
    space's HNSW index and vectors in Postgres's cache (pg_prewarm). Otherwise a checkpoint spreads those
    1.3 GB of writes over the next minutes, on the same two cores the timed queries run on, and the first
    queries read a cold cache. What the server refuses is said, and the run goes on."""
    from django.db import connection

    from recommendations.indexes import space_index_name
    from recommendations.models import ProductEmbedding

    table = ProductEmbedding._meta.db_table
    with raw_connection() as raw:
        started = time.perf_counter()
        try:
            raw.execute("CHECKPOINT")
            os.sync()
            print(f"  checkpoint and sync: {time.perf_counter() - started:.1f} s")
        except Exception as error:  # a server that refuses has its own checkpoint schedule
            print(f"  CHECKPOINT refused ({error}); background writes may overlap the timings")
        try:
            raw.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        except Exception as error:  # any refusal means "not here"
            print(f"  pg_prewarm unavailable ({error}); caches warm during the run")
            return
        pages = raw.execute(
            "SELECT pg_prewarm(%s::regclass) + pg_prewarm(reltoastrelid) + pg_prewarm(%s::regclass) "
            "FROM pg_class WHERE oid = %s::regclass",
            (space_index_name(space), table, table),
        ).fetchone()[0]
    print(f"  prewarmed {pages * 8 / 1024:.0f} MB (index and vectors) in {connection.settings_dict['NAME']}")
