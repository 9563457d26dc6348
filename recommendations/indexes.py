"""One partial HNSW index per embedding space.

The ``vector`` column is a ``halfvec`` without a fixed dimension (spaces differ), and pgvector can only index
a column of known dimension, so each space gets an expression index on ``(vector::halfvec(<dims>))``
restricted to its own rows. Queries must use exactly that expression and ``space_id = <id>`` for the
planner to pick the index (see ``selectors.vector_distance_sql``).
"""

from __future__ import annotations

import logging

from django.db import connection, transaction

from recommendations.conf import app_setting
from recommendations.models import EmbeddingSpace, ProductEmbedding

logger = logging.getLogger(__name__)

# pgvector's HNSW limit for halfvec (vector: 2,000).
MAX_HNSW_HALFVEC_DIMENSIONS = 4000


def space_index_name(space: EmbeddingSpace) -> str:
    return f"recommendations_pe_hnsw_{int(space.pk)}"


def space_index_state(space: EmbeddingSpace) -> str | None:
    """ "valid", "invalid" (a failed concurrent build leaves one behind) or None when there is no index."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [space_index_name(space)]
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return "valid" if row[0] else "invalid"


def ensure_space_index(space: EmbeddingSpace, *, concurrently: bool = False) -> bool:
    """Create the space's HNSW index unless a valid one exists; True when it was built now.

    ``concurrently=True`` builds without blocking writes to the table (for a live shop); it cannot run inside
    a transaction. Build memory and parallel workers come from ``HNSW_BUILD_MEMORY`` /
    ``HNSW_BUILD_WORKERS``: a build whose graph does not fit in ``maintenance_work_mem`` is many times slower.
    """
    dimensions = int(space.dimensions)
    if not 0 < dimensions <= MAX_HNSW_HALFVEC_DIMENSIONS:
        raise ValueError(
            f"Embedding space {space.pk} has {dimensions} dimensions; pgvector's HNSW index takes halfvec "
            f"vectors of 1 to {MAX_HNSW_HALFVEC_DIMENSIONS} dimensions."
        )
    state = space_index_state(space)
    if state == "valid":
        return False
    if state == "invalid":
        drop_space_index(space, concurrently=concurrently)

    name = space_index_name(space)
    table = connection.ops.quote_name(ProductEmbedding._meta.db_table)
    m = int(app_setting("HNSW_M"))
    ef_construction = int(app_setting("HNSW_EF_CONSTRUCTION"))
    create = (
        f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF NOT EXISTS {name} ON {table} "
        f"USING hnsw ((vector::halfvec({dimensions})) halfvec_cosine_ops) "
        f"WITH (m = {m}, ef_construction = {ef_construction}) WHERE space_id = {int(space.pk)}"
    )
    build_settings = {
        "maintenance_work_mem": str(app_setting("HNSW_BUILD_MEMORY")),
        "max_parallel_maintenance_workers": str(int(app_setting("HNSW_BUILD_WORKERS"))),
        # Workers are planned from the size of the table's main heap, but the vectors live in its TOAST
        # table: the heap looks tiny and PostgreSQL would build alone.
        "min_parallel_table_scan_size": "0",
    }
    if concurrently:
        if connection.in_atomic_block:
            raise RuntimeError("ensure_space_index(concurrently=True) cannot run inside a transaction.")
        with connection.cursor() as cursor:
            for setting, value in build_settings.items():
                cursor.execute("SELECT set_config(%s, %s, false)", [setting, value])
            try:
                cursor.execute(create)
            finally:
                for setting in build_settings:
                    cursor.execute(f"RESET {setting}")
    else:
        with transaction.atomic(), connection.cursor() as cursor:
            # CREATE INDEX refuses to run while deferred foreign-key checks of this transaction are pending.
            connection.check_constraints()
            for setting, value in build_settings.items():
                cursor.execute("SELECT set_config(%s, %s, true)", [setting, value])
            cursor.execute(create)
    logger.info("Built HNSW index %s for embedding space %s (%s dimensions)", name, space.pk, dimensions)
    return True


def drop_space_index(space: EmbeddingSpace, *, concurrently: bool = False) -> None:
    """Drop the space's index (e.g. when a retired space's rows are about to be deleted)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"DROP INDEX {'CONCURRENTLY ' if concurrently else ''}IF EXISTS {space_index_name(space)}"
        )
