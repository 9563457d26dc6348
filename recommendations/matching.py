"""Reads: "same style in other colours", and why a card matched, in a word.

Two ways to answer "what goes with this product?":

- ``similar`` (the default): similar in colour and kind, the active space's ranking (``selectors``).
- ``colourways``: what fashion shops show as "other colours". The products of the same design group first
  (when the catalog knows it: the ``group`` role or a design key in the product's attributes), then the
  nearest products whose colour differs from the query's, still ranked by vector similarity.

Colour is read from the colour + pattern descriptor each product's primary photo has in spaces whose recipe
is not the CNN alone (``recommendations.colour``; ``ProductEmbedding.descriptor``). Without descriptors (a
"cnn" space) colourways are the design group followed by the ordinary ranking.

Thresholds, measured on the shared Psychobunny photos by ``python bench/match_thresholds.py`` (80 designs
that come in several colourways, 548 photos, descriptors made as the embedding pipeline makes them; share
of photo pairs whose cosine is at least t):

    colour cosine  t =                      0.50  0.55  0.60  0.70  0.80
    same handle (same colourway)            0.95  0.91  0.87  0.79  0.64
    same design, another colourway          0.36  0.31  0.26  0.17  0.09
    another design, same colour name        0.95  0.92  0.87  0.72  0.45
    another design and colour, same kind    0.30  0.24  0.19  0.10  0.03

    pattern cosine  t =                     0.98  0.99  0.993
    same handle (same colourway)            0.51  0.21  0.12
    another design and colour, same kind    0.40  0.13  0.06
    another design and kind                 0.22  0.06  0.03

- "other colour" (colourways): colour cosine below 0.55 keeps 69 % of a design's other colourways and
  lets 9 % of same-colourway photos through (a back view, a model shot); 0.60 would let 13 % through.
- "same colour" label: at least 0.70: 79 % of same-colourway pairs and 72 % of pairs with the same colour
  name get it, 10 % of unrelated pairs of the same kind. Between 0.55 and 0.70 a colour is neither.
- "same pattern" label: at least 0.99. The pattern descriptor separates weakly on these mostly plain
  garments (21 % of same-colourway pairs, 13 % of unrelated pairs of the same kind, 6 % of the rest): a
  high bar, so the word is rarely given.
- "same kind": the same category, when neither colour nor pattern says more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from django.db import models

from lookalike import catalog
from recommendations import colour, recipes, selectors
from recommendations.conf import app_setting
from recommendations.models import EmbeddingSpace, ProductEmbedding
from recommendations.selectors import ProductFilter, ScoredProduct, SimilarProducts

SIMILAR = "similar"
COLOURWAYS = "colourways"
MATCH_MODES = (SIMILAR, COLOURWAYS)

SAME_COLOUR = "same colour"
SAME_PATTERN = "same pattern"
SAME_KIND = "same kind"

SAME_COLOUR_MIN_COSINE = 0.70
OTHER_COLOUR_MAX_COSINE = 0.55
SAME_PATTERN_MIN_COSINE = 0.99
# Nearest products read for "other colours": most of the nearest ones share the query's colour.
COLOURWAY_CANDIDATES = 200
# Members of a design group read at most (a group is a handful of colourways; a bad key must stay cheap).
MAX_GROUP_MEMBERS = 200


def has_descriptors(space: EmbeddingSpace | None) -> bool:
    return space is not None and recipes.descriptor_dimensions(space.recipe) > 0


def descriptors(product_ids: Iterable[int], *, space: EmbeddingSpace) -> dict[int, np.ndarray]:
    """Colour + pattern descriptors of these products in the space, in one binary read; {} without any."""
    ids = sorted({int(pk) for pk in product_ids})
    if not ids or not has_descriptors(space):
        return {}
    rows = selectors._fetch_binary(
        f"SELECT product_id, descriptor FROM {ProductEmbedding._meta.db_table} "
        "WHERE space_id = %s AND product_id = ANY(%s) AND descriptor IS NOT NULL",
        [space.pk, ids],
    )
    return {int(pk): descriptor for pk, descriptor in rows}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    # Stored in float16: normalise again rather than trust the unit length.
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def colour_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return _cosine(a[: colour.COLOUR_DIMENSIONS], b[: colour.COLOUR_DIMENSIONS])


def pattern_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return _cosine(a[colour.COLOUR_DIMENSIONS :], b[colour.COLOUR_DIMENSIONS :])


def match_label(query: np.ndarray | None, other: np.ndarray | None, *, same_kind: bool = False) -> str:
    """Why ``other`` matched ``query`` (descriptors), in a word; "" when no word helps."""
    if query is not None and other is not None:
        if colour_cosine(query, other) >= SAME_COLOUR_MIN_COSINE:
            return SAME_COLOUR
        if pattern_cosine(query, other) >= SAME_PATTERN_MIN_COSINE:
            return SAME_PATTERN
    return SAME_KIND if same_kind else ""


def label_items(
    items: Sequence[ScoredProduct],
    *,
    query_descriptor: np.ndarray | None,
    found: dict[int, np.ndarray] | None = None,
    space: EmbeddingSpace | None = None,
) -> list[ScoredProduct]:
    """The items with their colour or pattern word (``found``: descriptors already read, else read here)."""
    if found is None:
        found = descriptors([item.product.pk for item in items], space=space) if space else {}
    return [
        dataclasses.replace(item, match=match_label(query_descriptor, found.get(item.product.pk)))
        for item in items
    ]


def label_kind(items: Sequence[ScoredProduct], *, product: Any) -> list[ScoredProduct]:
    """ "same kind" on the items without a word that share ``product``'s category. The query product's
    category is read only when some item needs it."""
    if all(item.match for item in items) or catalog.product_role("category") is None:
        return list(items)
    if isinstance(product, models.Model):
        category = catalog.role_id(product, "category")
    else:
        value = catalog.role_values([product], "category").get(product)
        category = getattr(value, "pk", value)
    if category is None:
        return list(items)
    return [
        item
        if item.match or catalog.role_id(item.product, "category") != category
        else dataclasses.replace(item, match=SAME_KIND)
        for item in items
    ]


# --- design groups --------------------------------------------------------------------------------------


def _group_attribute(attributes: Any) -> tuple[str, str | int] | None:
    """The first design key (RECOMMENDATIONS["ADAPT_GROUP_ATTRIBUTES"]) with a value, as (key, value)."""
    if not isinstance(attributes, dict):
        return None
    # Keys in any case, as adaptation reads them ("Style_Code"); the query needs the stored spelling.
    keys = {str(key).lower(): key for key in attributes}
    for name in app_setting("ADAPT_GROUP_ATTRIBUTES"):
        if name not in keys:
            continue
        value = attributes[keys[name]]
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(keys[name]), value
    return None


def design_group_ids(product_id: int, *, filters: ProductFilter) -> list[int]:
    """Other products of the product's design group that pass ``filters``: the ``group`` role when the
    catalog declares one, else a design key in its attributes; [] when the catalog does not know."""
    lookup: dict[str, Any] | None = None
    group, attributes = catalog.role_lookup("group"), catalog.role_lookup("attributes")
    if group:
        value = catalog.role_values([product_id], "group").get(product_id)
        if value not in (None, ""):
            lookup = {group: getattr(value, "pk", value)}
    elif attributes:
        found = _group_attribute(catalog.role_values([product_id], "attributes").get(product_id))
        if found is not None:
            # Containment (@>), which a GIN index on the attributes column answers.
            lookup = {f"{attributes}__contains": {found[0]: found[1]}}
    if lookup is None:
        return []
    members = (
        catalog.products()
        .order_by()
        .filter(filters.product_q())
        .filter(**lookup)
        .exclude(pk=product_id)
        .values_list("pk", flat=True)[:MAX_GROUP_MEMBERS]
    )
    return [int(pk) for pk in members]


# --- answers ----------------------------------------------------------------------------------------------


def _rows_with_descriptors(
    product_ids: Sequence[int],
    *,
    vector: np.ndarray,
    space: EmbeddingSpace,
    exclude_sha256s: Sequence[str],
    query_product_id: int = 0,
) -> dict[int, tuple[float, list[str], np.ndarray | None]]:
    """product id -> (cosine distance to ``vector``, image digests, descriptor), one binary read; products
    showing one of ``exclude_sha256s`` are left out, except ``query_product_id`` (read for its descriptor).
    """
    dimensions = int(space.dimensions)
    rows = selectors._fetch_binary(
        f"SELECT product_id, (vector::halfvec({dimensions})) <=> %s, image_sha256s, descriptor "
        f"FROM {ProductEmbedding._meta.db_table} WHERE space_id = %s AND ("
        "product_id = %s OR (product_id = ANY(%s) AND NOT (image_sha256s && %s::varchar[])))",
        [
            selectors.QueryVector(vector),
            space.pk,
            query_product_id,
            sorted(set(product_ids)),
            list(exclude_sha256s),
        ],
    )
    return {int(pk): (float(distance), list(shas or []), desc) for pk, distance, shas, desc in rows}


def other_colours_near_vector(
    *,
    vector: np.ndarray,
    query_descriptor: np.ndarray | None,
    limit: int | None = None,
    filters: ProductFilter | None = None,
    space: EmbeddingSpace,
    group_ids: Sequence[int] = (),
    exclude_sha256s: Sequence[str] = (),
    query_product_id: int | None = None,
) -> SimilarProducts:
    """The same style in other colours: ``group_ids`` (the design group) first, then the nearest of
    ``COLOURWAY_CANDIDATES`` products whose colour differs from ``query_descriptor`` (or, given
    ``query_product_id``, from that product's stored one); both ranked by similarity to ``vector``, each
    labelled. Without a query descriptor: the group, then the nearest."""
    limit = selectors._limit(limit)
    filters = filters or ProductFilter()
    nearest, exact = selectors.nearest_product_rows(
        vector=vector,
        fetch=max(COLOURWAY_CANDIDATES, limit + selectors.SHARED_PHOTO_MARGIN),
        filters=filters,
        space=space,
        exclude_sha256s=exclude_sha256s,
    )
    group = set(group_ids)
    # The one extra read: descriptors of the candidates, and distances of group members the search missed.
    details = _rows_with_descriptors(
        [*group_ids, *(pk for pk, _, _ in nearest)],
        vector=vector,
        space=space,
        exclude_sha256s=exclude_sha256s,
        query_product_id=query_product_id or 0,
    )
    if query_product_id is not None:
        query_descriptor = details.pop(query_product_id, (0.0, [], None))[2]
    members = sorted(
        ((pk, *details[pk][:2]) for pk in group if pk in details), key=lambda row: (row[1], row[0])
    )
    others = []
    for pk, distance, shas in nearest:
        if pk in group or pk not in details:
            continue
        descriptor = details[pk][2]
        if query_descriptor is not None and (
            descriptor is None or colour_cosine(query_descriptor, descriptor) >= OTHER_COLOUR_MAX_COSINE
        ):
            continue
        others.append((pk, distance, shas))
    kept = selectors._drop_shared_photos([*members, *others])[:limit]
    items = selectors._load_products([(pk, 1.0 - distance) for pk, distance in kept])
    found = {pk: descriptor for pk, _ in kept if (descriptor := details[pk][2]) is not None}
    items = label_items(items, query_descriptor=query_descriptor, found=found)
    return SimilarProducts(items=items, source=selectors.EXACT if exact else selectors.INDEX, space=space)


def find_matches(
    *,
    product: Any,
    limit: int | None = None,
    filters: ProductFilter | None = None,
    diversity: float = 0.0,
    match: str = SIMILAR,
    explain: bool = False,
) -> SimilarProducts:
    """``selectors.find_similar_products`` with a match mode and, with ``explain``, a word per item."""
    if match not in MATCH_MODES:
        raise ValueError(f"match must be one of {', '.join(MATCH_MODES)}, got {match!r}")
    product_id = int(getattr(product, "pk", product))
    if match == SIMILAR:
        result = selectors._find_similar(product=product, limit=limit, filters=filters, diversity=diversity)
        if not explain or not result.items or result.space is None:
            return result
        found = descriptors([product_id, *(item.product.pk for item in result.items)], space=result.space)
        items = label_items(result.items, query_descriptor=found.get(product_id), found=found)
        return dataclasses.replace(result, items=label_kind(items, product=product))
    space, embedding, _ = selectors._space_embedding_and_neighbours(product_id)
    if space is None:
        return SimilarProducts(items=[], source=selectors.NONE, reason=selectors.NO_ACTIVE_SPACE)
    if embedding is None:
        return SimilarProducts(items=[], source=selectors.NONE, reason=selectors.NO_EMBEDDING, space=space)
    filters = (filters or ProductFilter()).excluding([product_id])
    result = other_colours_near_vector(
        vector=embedding.vector,
        query_descriptor=None,
        query_product_id=product_id,
        limit=limit,
        filters=filters,
        space=space,
        group_ids=design_group_ids(product_id, filters=filters),
        exclude_sha256s=embedding.image_sha256s,
    )
    if not explain:
        return dataclasses.replace(result, items=[dataclasses.replace(i, match="") for i in result.items])
    return dataclasses.replace(result, items=label_kind(result.items, product=product))


def describe_photo(data: bytes) -> np.ndarray:
    """The colour + pattern descriptor of a photo (an ad creative), made as the catalog's are: the centre
    square at the descriptor's working size. Raises ValueError for a file that cannot be read."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            # JPEG decodes at a fraction of its size: the descriptor needs 128 pixels, not 4,000.
            image.draft("RGB", (colour.SIDE * 2, colour.SIDE * 2))
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"not a readable image: {error}") from error
    side = min(rgb.size)
    left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
    square = rgb.crop((left, top, left + side, top + side)).resize(
        (colour.SIDE, colour.SIDE), Image.Resampling.BOX
    )
    described = colour.describe(np.asarray(square))
    return np.concatenate([described.colour, described.pattern]).astype(np.float32)
