"""Reads: products ranked by visual similarity.

Everything here queries one embedding space (the active one unless told otherwise), so vectors of different
encoders never meet. Three ways to answer "what looks like this?", cheapest first:

1. precomputed: the exact top-K stored by ``manage.py compute_neighbours``, when fresh and no filters ask
   for more than "in stock";
2. index: pgvector's HNSW index on the space, with iterative scans so that filters do not starve the result;
3. exact: a full scan of the matching rows, when the filters leave few products (or the index gave up).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from django.db import connection, models, transaction
from django.db.models import Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Cast
from django.utils import timezone
from pgvector.django import CosineDistance, HalfVectorField

from lookalike import catalog
from recommendations.conf import app_setting
from recommendations.models import EmbeddingSpace, ImageEmbedding, ProductEmbedding, ProductNeighbours

PRECOMPUTED = "precomputed"
INDEX = "index"
EXACT = "exact"
NONE = "none"

NO_ACTIVE_SPACE = "No embedding space is active yet: run `manage.py embed_catalog` first."
NO_EMBEDDING = "This product has no embedding yet: its images have not been embedded (or all of them failed)."
# pgvector refuses hnsw.ef_search above this.
MAX_EF_SEARCH = 1000
# Extra rows fetched beyond the limit, so that dropping products that share a photo rarely leaves it short.
SHARED_PHOTO_MARGIN = 4


def _stock_default() -> bool:
    return bool(app_setting("SIMILAR_IN_STOCK_ONLY"))


@dataclass(frozen=True)
class ProductFilter:
    """Restrictions on which products may be recommended. Empty means "no restriction"."""

    in_stock_only: bool = field(default_factory=_stock_default)
    category_ids: Sequence[int] = ()  # only these categories (and not their sub-categories)
    exclude_category_ids: Sequence[int] = ()
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    store_ids: Sequence[int] = ()
    brands: Sequence[str] = ()
    exclude_product_ids: frozenset[int] = field(default_factory=frozenset)

    @property
    def narrows_beyond_stock(self) -> bool:
        """True when anything other than the stock flag and excluded ids restricts the products."""
        return bool(
            self.category_ids
            or self.exclude_category_ids
            or self.min_price is not None
            or self.max_price is not None
            or self.store_ids
            or self.brands
        )

    def excluding(self, product_ids: Iterable[int]) -> ProductFilter:
        return dataclasses.replace(
            self, exclude_product_ids=self.exclude_product_ids | frozenset(product_ids)
        )

    def product_q(self, prefix: str = "") -> models.Q:
        """The filter as a Q object on the product model (``prefix``: e.g. "product__" from a relation).

        Roles that are expressions or cross a many-valued relation (an Oscar product's stock records and
        categories) cannot be reached through ``prefix``: the filter then goes through ``pk__in``.
        """
        if prefix and catalog.filters_need_subquery():
            if not self._restricts():
                return models.Q()
            return models.Q(**{f"{prefix}pk__in": catalog.products().filter(self.product_q()).values("pk")})
        q = catalog.listed_q(prefix)

        def name(role: str) -> str | None:
            lookup = catalog.role_lookup(role)
            return f"{prefix}{lookup}" if lookup else None

        in_stock = name("in_stock")
        if self.in_stock_only and in_stock:
            q &= models.Q(**{in_stock: True})
        if self.category_ids and name("category"):
            q &= models.Q(**{f"{name('category')}__in": list(self.category_ids)})
        if self.exclude_category_ids and name("category"):
            # Products without a category are not in the excluded one.
            excluded = models.Q(**{f"{name('category')}__in": list(self.exclude_category_ids)})
            q &= ~excluded | models.Q(**{f"{name('category')}__isnull": True})
        if self.min_price is not None and name("price"):
            q &= models.Q(**{f"{name('price')}__gte": self.min_price})
        if self.max_price is not None and name("price"):
            q &= models.Q(**{f"{name('price')}__lte": self.max_price})
        if self.store_ids and name("store"):
            q &= models.Q(**{f"{name('store')}__in": list(self.store_ids)})
        if self.brands and name("brand"):
            q &= models.Q(**{f"{name('brand')}__in": list(self.brands)})
        if self.exclude_product_ids:
            q &= ~models.Q(**{f"{prefix}pk__in": sorted(self.exclude_product_ids)})
        return q

    def _restricts(self) -> bool:
        return bool(
            self.narrows_beyond_stock
            or self.exclude_product_ids
            or (self.in_stock_only and catalog.role_lookup("in_stock"))
            or catalog.product_field("parent")
        )


@dataclass(frozen=True)
class ScoredProduct:
    product: Any
    score: float  # cosine similarity, 1 = identical
    match: str = ""  # why it matched, in a word (recommendations.matching): "same colour", ...


@dataclass(frozen=True)
class SimilarProducts:
    """A ranked answer and how it was found: ``source`` is precomputed, index, exact or none."""

    items: list[ScoredProduct]
    source: str
    reason: str = ""  # why the list is empty when it could not be computed at all
    space: EmbeddingSpace | None = None


@dataclass(frozen=True)
class StoredEmbedding:
    vector: np.ndarray  # float32
    image_sha256s: list[str]
    updated_at: datetime


@dataclass(frozen=True)
class StoredNeighbours:
    """A product's rows from ``compute_neighbours``, best first."""

    product_ids: list[int]
    scores: list[float]
    computed_at: datetime


@dataclass(frozen=True)
class SpaceVectors:
    """Every product vector of a space, row ``i`` belonging to ``product_ids[i]``."""

    product_ids: np.ndarray  # int64, ascending
    vectors: np.ndarray  # float32 (n, dimensions)
    image_sha256s: list[list[str]]


# --- vectors in binary ------------------------------------------------------------------------------------
# Django reads halfvec as text ("[0.1,0.2,...]"): 2,048 floats are ~20 KB of text per row to parse. The
# binary form is 2 bytes a value and numpy reads it without a Python loop.


class QueryVector:
    """A query vector sent as a binary halfvec parameter: 4 KB for 2,048 dimensions, instead of ~16 KB of
    SQL text for the server to parse."""

    __slots__ = ("halves",)

    def __init__(self, vector: np.ndarray) -> None:
        self.halves = np.asarray(vector, dtype=np.float32).reshape(-1).astype(np.float16)
        if not np.isfinite(self.halves).all():
            raise ValueError("query vector has values that are not finite in float16")


def _register_halfvec(raw: Any) -> None:
    """Binary halfvec adapters on the psycopg connection. They apply to binary results and to QueryVector
    parameters only, so Django's own (text) queries are unaffected."""
    import struct

    from psycopg.adapt import Dumper, Loader
    from psycopg.pq import Format
    from psycopg.types import TypeInfo

    info = TypeInfo.fetch(raw, "halfvec")
    if info is None:
        raise RuntimeError("The pgvector extension (type halfvec) is not installed in this database.")

    class HalfvecBinaryLoader(Loader):
        format = Format.BINARY

        def load(self, data: Any) -> np.ndarray:
            # Binary halfvec: uint16 dimensions, uint16 unused, then big-endian float16 values.
            return np.frombuffer(data, dtype=">f2", offset=4).astype(np.float32)

    class QueryVectorDumper(Dumper):
        format = Format.BINARY
        oid = info.oid

        def dump(self, obj: QueryVector) -> bytes:
            return struct.pack(">HH", obj.halves.size, 0) + obj.halves.astype(">f2").tobytes()

    info.register(raw)
    raw.adapters.register_loader(info.oid, HalfvecBinaryLoader)
    raw.adapters.register_dumper(QueryVector, QueryVectorDumper)


def _readable_sql(raw: Any, sql: str, params: Sequence[Any]) -> str:
    """The statement with its parameters inlined, for Django's query log (debug pages, tests)."""
    from psycopg import ClientCursor

    shown = [_halfvec_text(p.halves) if isinstance(p, QueryVector) else p for p in params]
    return ClientCursor(raw).mogrify(sql, shown)


def _fetch_binary(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows read on Django's own connection (same transaction), parameters bound by the server and results
    in binary: halfvec columns come as numpy arrays without parsing text."""
    connection.ensure_connection()
    raw = connection.connection
    if raw.adapters.types.get("halfvec") is None:
        _register_halfvec(raw)
    from psycopg import Cursor

    started = time.perf_counter()
    # Django's connection makes client-side-binding cursors, which cannot return binary results.
    with Cursor(raw) as cursor:
        # prepare=False: each statement is planned with its values, so the partial index (space_id = X)
        # stays usable; a generic plan for space_id = $1 could not use it.
        cursor.execute(sql, params, binary=True, prepare=False)
        rows = cursor.fetchall()
    if connection.queries_logged:
        elapsed_s = time.perf_counter() - started
        connection.queries_log.append({"sql": _readable_sql(raw, sql, params), "time": f"{elapsed_s:.3f}"})
    return rows


# In the model's field order, as Model.from_db() wants them.
_SPACE_COLUMNS = tuple(field.column for field in EmbeddingSpace._meta.concrete_fields)


def _space_embedding_and_neighbours(
    product_id: int,
) -> tuple[EmbeddingSpace | None, StoredEmbedding | None, StoredNeighbours | None]:
    """The active space, the product's vector in it and its stored neighbours: one round trip, since every
    product page asks."""
    spaces, embeddings = EmbeddingSpace._meta.db_table, ProductEmbedding._meta.db_table
    neighbours = ProductNeighbours._meta.db_table
    space_columns = ", ".join(f"s.{column}" for column in _SPACE_COLUMNS)
    rows = _fetch_binary(
        f"SELECT {space_columns}, e.vector, e.image_sha256s, e.updated_at, "
        "n.neighbour_ids, n.scores, n.computed_at "
        f"FROM {spaces} s LEFT JOIN {embeddings} e ON e.space_id = s.id AND e.product_id = %s "
        f"LEFT JOIN {neighbours} n ON n.space_id = s.id AND n.product_id = %s "
        "WHERE s.state = %s ORDER BY s.created_at DESC LIMIT 1",
        [product_id, product_id, EmbeddingSpace.State.ACTIVE.value],
    )
    if not rows:
        return None, None, None
    row = rows[0]
    space_fields = [field.attname for field in EmbeddingSpace._meta.concrete_fields]
    space = EmbeddingSpace.from_db(connection.alias, space_fields, list(row[: len(_SPACE_COLUMNS)]))
    vector, digests, updated_at, neighbour_ids, scores, computed_at = row[len(_SPACE_COLUMNS) :]
    if vector is None:
        return space, None, None
    embedding = StoredEmbedding(vector=vector, image_sha256s=list(digests or []), updated_at=updated_at)
    stored = None
    if neighbour_ids:
        stored = StoredNeighbours(
            product_ids=[int(pk) for pk in neighbour_ids],
            scores=[float(v) for v in scores],
            computed_at=computed_at,
        )
    return space, embedding, stored


def product_vectors(
    product_ids: Iterable[int], *, space: EmbeddingSpace | None = None
) -> dict[int, np.ndarray]:
    """The query vectors of these products (products without one are left out)."""
    space = space or active_space()
    ids = [int(pk) for pk in product_ids]
    if space is None or not ids:
        return {}
    table = ProductEmbedding._meta.db_table
    rows = _fetch_binary(
        f"SELECT product_id, vector FROM {table} WHERE space_id = %s AND product_id = ANY(%s)",
        [space.pk, ids],
    )
    return {int(pk): vector for pk, vector in rows}


def image_vectors(image_ids: Iterable[int], *, space: EmbeddingSpace) -> dict[int, np.ndarray]:
    """The vectors of these catalog images in the space (failed or missing ones are left out)."""
    ids = [int(pk) for pk in image_ids]
    if not ids:
        return {}
    table = ImageEmbedding._meta.db_table
    rows = _fetch_binary(
        f"SELECT image_id, vector FROM {table} WHERE space_id = %s AND image_id = ANY(%s) "
        "AND vector IS NOT NULL",
        [space.pk, ids],
    )
    return {int(pk): vector for pk, vector in rows}


def load_space_vectors(space: EmbeddingSpace) -> SpaceVectors:
    """All product vectors of a space in one binary read (100,000 x 2,048 is ~400 MB on the wire)."""
    table = ProductEmbedding._meta.db_table
    rows = _fetch_binary(
        f"SELECT product_id, vector, image_sha256s FROM {table} WHERE space_id = %s ORDER BY product_id",
        [space.pk],
    )
    dimensions = int(space.dimensions)
    vectors = np.empty((len(rows), dimensions), dtype=np.float32)
    for i, (_, vector, _) in enumerate(rows):
        vectors[i] = vector
    return SpaceVectors(
        product_ids=np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)),
        vectors=vectors,
        image_sha256s=[list(row[2] or []) for row in rows],
    )


# --- spaces and catalog helpers -------------------------------------------------------------------------


def active_space() -> EmbeddingSpace | None:
    return EmbeddingSpace.objects.active().first()


def primary_image_files(product_ids: Iterable[int]) -> dict[int, Any]:
    """Each product's first stored image file, in one query for all of them (no N+1 in widgets)."""
    return catalog.primary_images(list(product_ids))


@dataclass(frozen=True)
class ProductCard:
    """What a widget or an API answer shows of a recommended product, read through the catalog interface."""

    product: Any
    score: float
    title: str
    url: str
    image_url: str | None  # the storage URL of the first image (relative with the default storage)
    price: Decimal | None
    currency: str
    in_stock: bool
    brand: str
    category_id: int | None
    store_id: int | None
    match: str = ""  # "same colour", "same pattern", "same kind" or "" (recommendations.matching)


def product_cards(items: Sequence[ScoredProduct]) -> list[ProductCard]:
    """Cards for ranked products (their images come with them from the selectors, else in one query)."""
    missing = [item.product.pk for item in items if not hasattr(item.product, PRIMARY_IMAGE_ATTRIBUTE)]
    images = primary_image_files(missing)
    storage = catalog.image_storage()

    cards = []
    for item in items:
        product = item.product
        name = getattr(product, PRIMARY_IMAGE_ATTRIBUTE, None)
        image_url = storage.url(name) if name else None
        if product.pk in images:
            image_url = images[product.pk].url
        in_stock = catalog.role_value(product, "in_stock", True)
        cards.append(
            ProductCard(
                product=product,
                score=item.score,
                title=str(catalog.role_value(product, "title", "") or product),
                url=catalog.product_url(product),
                image_url=image_url,
                price=catalog.role_value(product, "price"),
                currency=str(catalog.role_value(product, "currency", "") or ""),
                in_stock=bool(in_stock),
                brand=str(catalog.role_value(product, "brand", "") or ""),
                category_id=catalog.role_id(product, "category"),
                store_id=catalog.role_id(product, "store"),
                match=item.match,
            )
        )
    return cards


# Set on products loaded here: the name of their first image file ("" when none), so that cards need no
# second query.
PRIMARY_IMAGE_ATTRIBUTE = "similar_primary_image"


# The roles a card shows: selected with the products, so that expression roles cost no query per card.
CARD_ROLES = ("title", "price", "currency", "in_stock", "brand", "category", "store", "url")


def _load_products(scored: Sequence[tuple[int, float]]) -> list[ScoredProduct]:
    products = (
        catalog.products(read=CARD_ROLES)
        .order_by()
        .annotate(**{PRIMARY_IMAGE_ATTRIBUTE: catalog.primary_image_subquery()})
        .in_bulk([pk for pk, _ in scored])
    )
    return [ScoredProduct(product=products[pk], score=score) for pk, score in scored if pk in products]


def _limit(limit: int | None) -> int:
    return max(1, int(limit or app_setting("SIMILAR_LIMIT")))


# --- live queries -----------------------------------------------------------------------------------------


def _space_rows(space: EmbeddingSpace, exclude_sha256s: Sequence[str]) -> models.QuerySet:
    """The space's product vectors, less those of products showing one of these photos."""
    rows = ProductEmbedding.objects.filter(space_id=space.pk)
    if exclude_sha256s:
        rows = rows.exclude(image_sha256s__overlap=list(exclude_sha256s))
    return rows


def _candidates(
    space: EmbeddingSpace, filters: ProductFilter, exclude_sha256s: Sequence[str]
) -> models.QuerySet:
    return _space_rows(space, exclude_sha256s).filter(filters.product_q(prefix="product__"))


def _matching_product_ids(filters: ProductFilter, cap: int) -> list[Any]:
    """Ids of up to ``cap`` products passing ``filters``, fetched as one binary array: a thousand ids cost
    one value to decode instead of a thousand rows to build."""
    matching = catalog.products().order_by().filter(filters.product_q()).values("pk")[:cap]
    sql, params = matching.query.get_compiler(connection=connection).as_sql()
    return list(_fetch_binary(f"SELECT ARRAY({sql})", params)[0][0])


def _product_id_in(ids: list[Any]) -> RawSQL:
    """``product_id = ANY(%s)`` with the ids as one array parameter: ``product_id__in`` would send one
    placeholder per id, and parsing a thousand of them costs more than the scan they select."""
    quote = connection.ops.quote_name
    column = f"{quote(ProductEmbedding._meta.db_table)}.{quote('product_id')}"
    return RawSQL(f"{column} = ANY(%s)", (ids,), output_field=models.BooleanField())


@functools.cache
def _float16_texts() -> np.ndarray:
    """A text of every float16 value that reads back exactly (5 significant digits), by bit pattern."""
    values = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32).tolist()
    return np.array([f"{value:.5g}" for value in values], dtype=object)


def _halfvec_text(vector: np.ndarray) -> str:
    """``[v1,v2,...]`` in float16 precision (the column's), ~50x faster than formatting 2,048 floats."""
    halves = np.asarray(vector, dtype=np.float32).astype(np.float16)
    if not np.isfinite(halves).all():
        raise ValueError("query vector has values that are not finite in float16")
    return "[" + ",".join(_float16_texts()[halves.view(np.uint16)].tolist()) + "]"


_iterative_scans: dict[str, bool] = {}


def _has_iterative_scans() -> bool:
    """pgvector >= 0.8 (iterative index scans); older versions refuse the settings, and a filtered index scan
    that comes back short is then answered by the exact scan."""
    alias = connection.alias
    if alias not in _iterative_scans:
        with connection.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
        version = tuple(int(part) for part in row[0].split(".")[:2]) if row else (0, 0)
        _iterative_scans[alias] = version >= (0, 8)
    return _iterative_scans[alias]


def _nearest_statement(
    candidates: models.QuerySet, *, space: EmbeddingSpace, vector: np.ndarray, fetch: int, exact: bool
) -> tuple[str, Sequence[Any], dict[str, str]]:
    """SQL, parameters and SET LOCAL settings of the query for the ``fetch`` nearest candidates.

    The distance is written exactly as the space's index expression, ``(vector::halfvec(D)) <=> q``, with
    ``space_id = X`` in the WHERE clause: anything else and the planner cannot use the partial index.
    """
    dimensions = int(space.dimensions)
    query = np.asarray(vector, dtype=np.float32).reshape(-1)
    if query.shape[0] != dimensions:
        raise ValueError(f"query vector has {query.shape[0]} dimensions, the space has {dimensions}")
    distance: models.Expression = CosineDistance(
        Cast("vector", HalfVectorField(dimensions=dimensions)), Value(QueryVector(query))
    )
    if exact:
        # "+ 0" keeps the ORDER BY from matching the HNSW index expression, so the vector index cannot be
        # used while the b-tree on (product, space) still can: a filtered exact scan reads only its rows.
        distance = models.ExpressionWrapper(distance + Value(0.0), output_field=models.FloatField())
    queryset = (
        candidates.annotate(distance=distance)
        .order_by("distance")
        .values_list("product_id", "distance", "image_sha256s")[:fetch]
    )
    query_settings: dict[str, str] = {}
    if not exact:
        query_settings = {
            "hnsw.ef_search": str(min(MAX_EF_SEARCH, max(int(app_setting("HNSW_EF_SEARCH")), fetch)))
        }
        if _has_iterative_scans():
            # Keep walking the graph until enough rows pass the filters.
            query_settings["hnsw.iterative_scan"] = "relaxed_order"
            query_settings["hnsw.max_scan_tuples"] = str(int(app_setting("HNSW_MAX_SCAN_TUPLES")))
    sql, params = queryset.query.get_compiler(connection=connection).as_sql()
    return sql, params, query_settings


def _read_with_settings(
    sql: str, params: Sequence[Any], query_settings: dict[str, str]
) -> list[tuple[Any, ...]]:
    with transaction.atomic():
        if query_settings:
            with connection.cursor() as cursor:
                # set_config(..., true) is SET LOCAL; one statement, one round trip.
                cursor.execute(
                    "SELECT " + ", ".join(["set_config(%s, %s, true)"] * len(query_settings)),
                    [value for pair in query_settings.items() for value in pair],
                )
        rows = _fetch_binary(sql, params)
        # Read-only: rolling back undoes the SET LOCALs even when a caller's transaction encloses this one.
        transaction.set_rollback(True)
    return rows


def _nearest_rows(
    candidates: models.QuerySet, *, space: EmbeddingSpace, vector: np.ndarray, fetch: int, exact: bool
) -> list[tuple[int, float, list[str]]]:
    """The ``fetch`` nearest candidates as (product_id, cosine distance, image digests), nearest first."""
    statement = _nearest_statement(candidates, space=space, vector=vector, fetch=fetch, exact=exact)
    rows = [(int(pk), float(d), list(shas or [])) for pk, d, shas in _read_with_settings(*statement)]
    # relaxed_order may return rows slightly out of order; product id breaks ties for a stable answer.
    rows.sort(key=lambda row: (row[1], row[0]))
    return rows


def explain_search(
    *,
    vector: np.ndarray,
    limit: int | None = None,
    filters: ProductFilter | None = None,
    space: EmbeddingSpace | None = None,
    exact: bool = False,
    analyze: bool = False,
) -> str:
    """The plan of the query ``search_near_vector`` runs on the index path (or the exact one), with the same
    parameters and settings: for checking that the planner uses a space's HNSW index."""
    space = space or active_space()
    if space is None:
        raise ValueError(NO_ACTIVE_SPACE)
    candidates = _candidates(space, filters or ProductFilter(), ())
    sql, params, query_settings = _nearest_statement(
        candidates, space=space, vector=vector, fetch=_limit(limit) + SHARED_PHOTO_MARGIN, exact=exact
    )
    explain = "EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN "
    return "\n".join(row[0] for row in _read_with_settings(explain + sql, params, query_settings))


def _drop_shared_photos(rows: Iterable[tuple[int, float, list[str]]]) -> list[tuple[int, float]]:
    """Keep the best of products that show a byte-identical photo: the same picture twice is no choice."""
    seen: set[str] = set()
    kept: list[tuple[int, float]] = []
    for pk, distance, shas in rows:
        if seen.intersection(shas):
            continue
        seen.update(shas)
        kept.append((pk, distance))
    return kept


def nearest_product_rows(
    *,
    vector: np.ndarray,
    fetch: int,
    filters: ProductFilter,
    space: EmbeddingSpace,
    exclude_sha256s: Sequence[str] = (),
    exact: bool = False,
) -> tuple[list[tuple[int, float, list[str]]], bool]:
    """The ``fetch`` nearest products passing ``filters`` as (product_id, cosine distance, image digests),
    nearest first, and whether the exact scan answered them (see the module docstring)."""
    candidates: models.QuerySet | None = None
    expected = fetch
    if not exact and filters.narrows_beyond_stock:
        # Few matching products: scan their vectors exactly. The filter is answered on the catalog's own
        # table (its indexes, capped at the threshold), then only those products' vectors are read.
        threshold = max(int(app_setting("EXACT_SCAN_THRESHOLD")), fetch)
        matching_ids = _matching_product_ids(filters, threshold)
        exact, expected = len(matching_ids) < threshold, min(fetch, len(matching_ids))
        if exact:
            # The ids already passed the filters: without the join the planner reads just their rows
            # through the (product, space) index instead of scanning the space.
            candidates = _space_rows(space, exclude_sha256s).filter(_product_id_in(matching_ids))
    if candidates is None:
        candidates = _candidates(space, filters, exclude_sha256s)
    if exact and expected == 0:
        rows = []  # nothing passes the filters: no vector needs reading
    else:
        rows = _nearest_rows(candidates, space=space, vector=vector, fetch=fetch, exact=exact)
    if not exact and len(rows) < expected:
        # The index scan hit hnsw.max_scan_tuples before enough rows passed the filters (or the catalog is
        # smaller than the request): the exact scan gives everything there is.
        exact = True
        rows = _nearest_rows(candidates, space=space, vector=vector, fetch=fetch, exact=True)
    return rows, exact


def search_near_vector(
    *,
    vector: np.ndarray,
    limit: int | None = None,
    filters: ProductFilter | None = None,
    space: EmbeddingSpace | None = None,
    diversity: float = 0.0,
    exclude_sha256s: Sequence[str] = (),
    exact: bool = False,
) -> SimilarProducts:
    """The products nearest (cosine) to ``vector``, best first, one per product; see the module docstring.

    ``diversity`` (0..1) re-ranks an over-fetched candidate list with MMR; ``exclude_sha256s`` drops products
    showing any of these photos; ``exact`` skips the index (the ground truth the index is measured against).
    """
    space = space or active_space()
    if space is None:
        return SimilarProducts(items=[], source=NONE, reason=NO_ACTIVE_SPACE)
    if not 0.0 <= diversity <= 1.0:
        raise ValueError(f"diversity must be between 0 and 1, got {diversity}")
    limit = _limit(limit)
    filters = filters or ProductFilter()
    wanted = limit * int(app_setting("MMR_CANDIDATES")) if diversity > 0 else limit
    rows, exact = nearest_product_rows(
        vector=vector,
        fetch=wanted + SHARED_PHOTO_MARGIN,
        filters=filters,
        space=space,
        exclude_sha256s=exclude_sha256s,
        exact=exact,
    )
    kept = _drop_shared_photos(rows)
    if diversity > 0 and len(kept) > 1:
        from recommendations.ranking import mmr  # torch: imported only when someone asks for diversity

        vectors = product_vectors([pk for pk, _ in kept], space=space)
        kept = [row for row in kept if row[0] in vectors]
        order = mmr(
            np.array([1.0 - d for _, d in kept], dtype=np.float32),
            np.stack([vectors[pk] for pk, _ in kept]),
            limit,
            diversity,
        )
        kept = [kept[i] for i in order]
    scored = [(pk, 1.0 - distance) for pk, distance in kept[:limit]]
    return SimilarProducts(items=_load_products(scored), source=EXACT if exact else INDEX, space=space)


def products_near_vector(
    *,
    vector: np.ndarray,
    limit: int | None = None,
    filters: ProductFilter | None = None,
    space: EmbeddingSpace | None = None,
    diversity: float = 0.0,
) -> list[ScoredProduct]:
    """The products whose vectors are nearest (cosine) to ``vector``, best first, one row per product."""
    return search_near_vector(
        vector=vector, limit=limit, filters=filters, space=space, diversity=diversity
    ).items


# --- similar to a product -------------------------------------------------------------------------------


def _precomputed_neighbours(
    *, stored: StoredNeighbours | None, embedding: StoredEmbedding, limit: int, filters: ProductFilter
) -> list[ScoredProduct] | None:
    """The stored neighbours when they are fresh and enough of them pass the filters, else None."""
    if stored is None or len(stored.product_ids) < limit:
        return None
    max_age = timedelta(seconds=float(app_setting("NEIGHBOURS_MAX_AGE_S")))
    # Neighbours computed before the product's vector last changed describe an image it no longer has.
    if stored.computed_at <= embedding.updated_at or stored.computed_at < timezone.now() - max_age:
        return None
    scored = [
        (pk, score)
        for pk, score in zip(stored.product_ids, stored.scores, strict=True)
        if pk not in filters.exclude_product_ids
    ]
    if len(scored) < limit:
        return None
    # Stock changes all day: it is read now, with the products (all K of them, in the same query).
    items = _load_products(scored)
    if filters.in_stock_only:
        items = [item for item in items if catalog.role_value(item.product, "in_stock", True)]
    if catalog.product_field("parent"):  # a variant with photos of its own was embedded: not listed alone
        items = [item for item in items if catalog.role_id(item.product, "parent") is None]
    if filters.store_ids:
        items = [item for item in items if catalog.role_id(item.product, "store") in filters.store_ids]
    return items[:limit] if len(items) >= limit else None


def _own_store_id(product: Any) -> Any:
    """The store of ``product`` (a product or its primary key); None when the catalog has no store role."""
    if hasattr(product, "pk"):
        return catalog.role_id(product, "store")
    return catalog.role_values([product], "store").get(product)


def find_similar_products(
    *,
    product: Any,
    limit: int | None = None,
    filters: ProductFilter | None = None,
    diversity: float = 0.0,
    same_store: bool | None = None,
    match: str = "similar",
    explain: bool = False,
) -> SimilarProducts:
    """Products that look like ``product`` (a product or its primary key): not itself, not products showing
    one of its photos.

    ``same_store`` (default: the ``SIMILAR_SAME_STORE`` setting) keeps to the product's own store unless
    ``filters`` name stores. Precomputed neighbours answer when they are fresh, ``filters`` ask for nothing
    beyond "in stock" and the store, and ``diversity`` is 0; otherwise the live query does (see the module
    docstring). ``match="colourways"`` asks for the same style in other colours instead, and ``explain``
    labels each item with why it matched (both in ``recommendations.matching``).
    """
    if same_store is None:
        same_store = bool(app_setting("SIMILAR_SAME_STORE"))
    if same_store and not (filters and filters.store_ids):
        store_id = _own_store_id(product)
        if store_id is not None:
            filters = dataclasses.replace(filters or ProductFilter(), store_ids=[store_id])
    if match != "similar" or explain:
        from recommendations import matching

        return matching.find_matches(
            product=product, limit=limit, filters=filters, diversity=diversity, match=match, explain=explain
        )
    return _find_similar(product=product, limit=limit, filters=filters, diversity=diversity)


def _find_similar(
    *, product: Any, limit: int | None = None, filters: ProductFilter | None = None, diversity: float = 0.0
) -> SimilarProducts:
    product_id = int(getattr(product, "pk", product))
    space, embedding, stored_neighbours = _space_embedding_and_neighbours(product_id)
    if space is None:
        return SimilarProducts(items=[], source=NONE, reason=NO_ACTIVE_SPACE)
    if embedding is None:
        return SimilarProducts(items=[], source=NONE, reason=NO_EMBEDDING, space=space)
    limit = _limit(limit)
    filters = (filters or ProductFilter()).excluding([product_id])
    # Stored neighbours span every store: the store is checked on them like the stock.
    if diversity == 0 and not dataclasses.replace(filters, store_ids=()).narrows_beyond_stock:
        items = _precomputed_neighbours(
            stored=stored_neighbours, embedding=embedding, limit=limit, filters=filters
        )
        if items is not None:
            return SimilarProducts(items=items, source=PRECOMPUTED, space=space)
    return search_near_vector(
        vector=embedding.vector,
        limit=limit,
        filters=filters,
        space=space,
        diversity=diversity,
        exclude_sha256s=embedding.image_sha256s,
    )


def similar_products(
    *,
    product: Any,
    limit: int | None = None,
    filters: ProductFilter | None = None,
    diversity: float = 0.0,
    same_store: bool | None = None,
) -> list[ScoredProduct]:
    """Products that look like ``product``, best first (see ``find_similar_products``)."""
    return find_similar_products(
        product=product, limit=limit, filters=filters, diversity=diversity, same_store=same_store
    ).items
