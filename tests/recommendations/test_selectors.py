"""similar_products and friends against the real PostgreSQL + pgvector: filters, exclusions, HNSW vs exact."""

from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from recommendations import selectors
from recommendations.conf import app_setting
from recommendations.indexes import ensure_space_index, space_index_name
from recommendations.models import ProductEmbedding, ProductNeighbours
from recommendations.selectors import ProductFilter
from tests.recommendations.vectors import clustered_vectors, create_catalog, create_space, exact_ids

pytestmark = pytest.mark.django_db

DIMENSIONS = 32
LIVE = (selectors.INDEX, selectors.EXACT)


def settings_with(**values):
    from django.conf import settings

    return override_settings(RECOMMENDATIONS={**settings.RECOMMENDATIONS, **values})


def ids(result) -> list[int]:
    return [item.product.pk for item in result]


def unit(values) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def near(base: np.ndarray, amount: float, seed: int) -> np.ndarray:
    return unit(base + amount * np.random.default_rng(seed).normal(size=base.shape))


@pytest.fixture
def space(db):
    return create_space(DIMENSIONS)


def test_excludes_the_product_itself_and_products_sharing_a_photo(store, space):
    base = unit(np.random.default_rng(1).normal(size=DIMENSIONS))
    vectors = np.stack(
        [base, base, near(base, 0.1, 2), near(base, 0.12, 3), near(base, 0.3, 4), near(base, 2, 5)]
    )
    shas = [
        ["photo-a", "photo-b"],
        ["photo-b"],
        ["photo-c"],
        ["photo-c", "photo-x"],
        ["photo-e"],
        ["photo-f"],
    ]
    query, same_photo, close, close_same_photo, further, far = create_catalog(
        store, vectors, space=space, shas=shas
    )

    result = selectors.find_similar_products(product=query, limit=10)

    # The identical vector of a product showing the same photo would otherwise rank first; of two products
    # sharing a photo with each other only the better one is shown; each product appears once.
    assert ids(result.items) == [close.pk, further.pk, far.pk]
    assert result.items[0].score > result.items[1].score > result.items[2].score
    assert same_photo.pk not in ids(result.items) and close_same_photo.pk not in ids(result.items)
    assert result.source == selectors.EXACT  # fewer products than asked for: everything is scanned


def test_filters_restrict_results_and_keep_the_exact_order(store, space, make_product):
    from shop.models import Category, Store

    shirts, shoes = Category.from_path(["Men", "Shirts"]), Category.from_path(["Men", "Shoes"])
    other_store = Store.objects.create(name="Other store")
    vectors = clustered_vectors(60, DIMENSIONS, clusters=2, seed=3)
    prices = [f"{10 + i}.00" for i in range(60)]
    in_stock = [i % 5 != 0 for i in range(60)]
    products = create_catalog(
        store, vectors, space=space, categories=[shirts, shoes, None], prices=prices, in_stock=in_stock
    )
    for product in products[::4]:
        product.brand = "Acme"
        product.save()
    for product in products[1::6]:
        product.store = other_store
        product.save()
    query = products[0]
    everyone = [p for p in products if p.pk != query.pk]

    def expected(keep) -> list[int]:
        positions = np.array([products.index(p) for p in everyone if keep(p)])
        return [products[i].pk for i in exact_ids(vectors, vectors[0], positions, 8)]

    cases = [
        (ProductFilter(), lambda p: p.in_stock),
        (ProductFilter(in_stock_only=False), lambda p: True),
        (ProductFilter(category_ids=[shirts.pk]), lambda p: p.in_stock and p.category_id == shirts.pk),
        (
            ProductFilter(exclude_category_ids=[shirts.pk]),
            lambda p: p.in_stock and p.category_id != shirts.pk,
        ),
        (
            ProductFilter(min_price=Decimal("20"), max_price=Decimal("40.00")),
            lambda p: p.in_stock and Decimal(20) <= p.price <= Decimal(40),
        ),
        (ProductFilter(store_ids=[other_store.pk]), lambda p: p.in_stock and p.store_id == other_store.pk),
        (ProductFilter(brands=["Acme"]), lambda p: p.in_stock and p.brand == "Acme"),
    ]
    for filters, keep in cases:
        # Across both stores: the default (the product's own store) is tested in test_same_store.py.
        result = selectors.find_similar_products(product=query, limit=8, filters=filters, same_store=False)
        assert ids(result.items) == expected(keep), filters
        # Narrowing filters leave 5-24 candidates (below EXACT_SCAN_THRESHOLD): scanned exactly.
        assert result.source == (selectors.EXACT if filters.narrows_beyond_stock else selectors.INDEX)


def test_empty_answers_say_why(store, space, make_product):
    without_embedding = make_product()
    result = selectors.find_similar_products(product=without_embedding)
    assert result.items == [] and result.source == selectors.NONE and "no embedding" in result.reason

    space.state = "retired"
    space.save()
    result = selectors.find_similar_products(product=without_embedding)
    assert result.items == [] and "No embedding space is active" in result.reason
    assert selectors.similar_products(product=without_embedding) == []


def nearest_query_sql(space, vector, filters: ProductFilter) -> str:
    # The index path's SQL (the exact path orders by a different expression and lists the product ids).
    with settings_with(EXACT_SCAN_THRESHOLD=0), CaptureQueriesContext(connection) as queries:
        selectors.search_near_vector(vector=vector, limit=10, filters=filters, space=space)
    return next(q["sql"] for q in queries.captured_queries if "<=>" in q["sql"])


def analyze() -> None:
    # Rows inserted by the test are invisible to the planner's statistics until analysed (autovacuum would).
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE recommendations_productembedding, shop_product")


def test_selective_filters_return_the_full_limit_identical_to_exact(store, space):
    from shop.models import Category

    rare, tenth, rest = (
        Category.from_path(["Rare"]),
        Category.from_path(["Tenth"]),
        Category.from_path(["Rest"]),
    )
    vectors = clustered_vectors(5000, DIMENSIONS, seed=5)
    # Every 100th product is "rare" (1 % of the catalog), every 10th (offset 5) "tenth" (10 %).
    categories = [rare if i % 100 == 0 else tenth if i % 10 == 5 else rest for i in range(100)]
    products = create_catalog(store, vectors, space=space, categories=categories)
    ensure_space_index(space)
    analyze()

    rare_filter, rare_positions = ProductFilter(category_ids=[rare.pk]), np.arange(0, 5000, 100)
    for query_position in (1, 2, 3):
        expected = [products[i].pk for i in exact_ids(vectors, vectors[query_position], rare_positions, 10)]
        # 50 candidates is below EXACT_SCAN_THRESHOLD: the matching rows are scanned exactly.
        result = selectors.search_near_vector(vector=vectors[query_position], limit=10, filters=rare_filter)
        assert result.source == selectors.EXACT and ids(result.items) == expected
        # Without the threshold the planner may still not walk the graph for 1 %; either way, the full answer.
        with settings_with(EXACT_SCAN_THRESHOLD=0):
            result = selectors.search_near_vector(
                vector=vectors[query_position], limit=10, filters=rare_filter
            )
        assert ids(result.items) == expected

    tenth_filter, tenth_positions = ProductFilter(category_ids=[tenth.pk]), np.arange(5, 5000, 10)
    plan = selectors.explain_search(vector=vectors[1], limit=10, filters=tenth_filter, analyze=True)
    assert f"Index Scan using {space_index_name(space)}" in plan, "10 %: the planner walks the graph"
    sql = nearest_query_sql(space, vectors[1], tenth_filter)
    # The problem: with hnsw.ef_search 40 and no iterative scan, the index hands over 40 rows and the
    # filter keeps about 10 % of them.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL hnsw.ef_search = 40")
        cursor.execute("SET LOCAL hnsw.iterative_scan = off")
        cursor.execute(sql.replace("LIMIT 14", "LIMIT 10"))
        plain_rows = cursor.fetchall()
        transaction.set_rollback(True)
    assert len(plain_rows) < 10
    # With iterative scans every query gets its full limit, and (HNSW being approximate) almost always
    # exactly the brute-force answer.
    agreeing = 0
    for query_position in range(1, 21):
        expected = [products[i].pk for i in exact_ids(vectors, vectors[query_position], tenth_positions, 10)]
        with settings_with(EXACT_SCAN_THRESHOLD=100):  # 500 candidates: the index, not an exact scan
            result = selectors.search_near_vector(
                vector=vectors[query_position], limit=10, filters=tenth_filter
            )
        assert result.source == selectors.INDEX and len(result.items) == 10
        assert all(item.product.category_id == tenth.pk for item in result.items)
        agreeing += ids(result.items) == expected
    assert agreeing >= 18


def test_live_query_uses_the_spaces_hnsw_index_and_agrees_with_exact_search(store, space):
    vectors = clustered_vectors(2000, DIMENSIONS, seed=6)
    products = create_catalog(store, vectors, space=space)
    assert ensure_space_index(space) is True
    assert ensure_space_index(space) is False  # already there
    other = create_space(DIMENSIONS, state="building", encoder="other")
    ensure_space_index(other)
    analyze()

    # The statement as the selector sends it (the vector a bound binary parameter), planned by the server.
    plan = selectors.explain_search(vector=vectors[0], limit=10)
    # The query's expression and space_id match this space's partial index, and no other space's.
    assert f"Index Scan using {space_index_name(space)}" in plan, plan
    assert space_index_name(other) not in plan

    everything = np.arange(len(vectors))
    agreeing = 0
    with settings_with(EXACT_SCAN_THRESHOLD=0):
        for position in range(0, 2000, 100):
            result = selectors.search_near_vector(vector=vectors[position], limit=10)
            assert result.source == selectors.INDEX and len(result.items) == 10
            exact = [products[i].pk for i in exact_ids(vectors, vectors[position], everything, 10)]
            agreeing += ids(result.items) == exact
    # HNSW is approximate; on a set this small with ef_search 100 it finds the exact answer.
    assert agreeing >= 19


def test_diversity_spreads_results_over_looks(store, space):
    rng = np.random.default_rng(7)
    look_a, look_b = unit(rng.normal(size=DIMENSIONS)), unit(rng.normal(size=DIMENSIONS))
    query_vector = unit(0.8 * look_a + 0.6 * look_b)
    colourways = [near(look_a, 0.02, i) for i in range(10)]  # ten near-identical products
    others = [near(look_b, 0.3, 100 + i) for i in range(10)]
    products = create_catalog(store, np.stack([query_vector, *colourways, *others]), space=space)
    colourway_ids = {p.pk for p in products[1:11]}

    plain = selectors.similar_products(product=products[0], limit=6)
    diverse = selectors.similar_products(product=products[0], limit=6, diversity=0.7)

    assert set(ids(plain)) <= colourway_ids
    assert 0 < len(set(ids(diverse)) & colourway_ids) < 6
    assert ids(diverse)[0] == ids(plain)[0]  # the best match still comes first
    with pytest.raises(ValueError):
        selectors.similar_products(product=products[0], diversity=1.5)


def store_neighbours(space, product, neighbours, *, computed_at=None):
    computed_at = computed_at or timezone.now()
    ProductNeighbours.objects.update_or_create(
        space=space,
        product=product,
        defaults={
            "neighbour_ids": [n.pk for n in neighbours],
            "scores": [0.5] * len(neighbours),
            "computed_at": computed_at,
        },
    )


def test_precomputed_neighbours_are_used_only_when_fresh_and_unfiltered(store, space):
    from shop.models import Category

    shirts = Category.from_path(["Shirts"])
    vectors = clustered_vectors(12, DIMENSIONS, clusters=1, seed=8)
    products = create_catalog(store, vectors, space=space, categories=[shirts])
    query, others = products[0], products[1:]
    # Stored in an order the live query would never give, so the answer shows where it came from.
    stored_order = sorted(others, key=lambda p: -p.pk)
    store_neighbours(space, query, stored_order)

    result = selectors.find_similar_products(product=query, limit=5)
    assert result.source == selectors.PRECOMPUTED and ids(result.items) == [p.pk for p in stored_order[:5]]

    # Stock is applied when reading: an out-of-stock neighbour is skipped and the next one moves up.
    stored_order[0].in_stock = False
    stored_order[0].save()
    result = selectors.find_similar_products(product=query, limit=5)
    assert result.source == selectors.PRECOMPUTED and ids(result.items) == [p.pk for p in stored_order[1:6]]
    # Too few in stock for the limit: the live query answers.
    assert selectors.find_similar_products(product=query, limit=11).source in LIVE

    # Any filter beyond stock, or diversity, goes live.
    assert (
        selectors.find_similar_products(
            product=query, limit=5, filters=ProductFilter(category_ids=[shirts.pk])
        ).source
        == selectors.EXACT
    )
    assert selectors.find_similar_products(product=query, limit=5, diversity=0.3).source in LIVE

    # Stale: older than NEIGHBOURS_MAX_AGE_S ...
    old = timezone.now() - timedelta(seconds=app_setting("NEIGHBOURS_MAX_AGE_S") + 60)
    ProductEmbedding.objects.filter(space=space, product=query).update(updated_at=old - timedelta(hours=1))
    store_neighbours(space, query, stored_order, computed_at=old)
    assert selectors.find_similar_products(product=query, limit=5).source in LIVE
    # ... or computed before the product's vector last changed.
    store_neighbours(space, query, stored_order)
    assert selectors.find_similar_products(product=query, limit=5).source == selectors.PRECOMPUTED
    embedding = ProductEmbedding.objects.get(space=space, product=query)
    embedding.vector = vectors[1]
    embedding.save()
    assert selectors.find_similar_products(product=query, limit=5).source in LIVE


def test_vectors_read_in_binary_match_the_stored_ones(store, space):
    vectors = clustered_vectors(20, DIMENSIONS, seed=9)
    products = create_catalog(store, vectors, space=space)
    loaded = selectors.load_space_vectors(space)
    assert loaded.product_ids.tolist() == sorted(p.pk for p in products)
    assert np.allclose(loaded.vectors, vectors, atol=2e-3)  # halfvec keeps ~3 significant digits
    by_id = selectors.product_vectors([products[3].pk, products[5].pk, 10**9], space=space)
    assert set(by_id) == {products[3].pk, products[5].pk}
    assert np.allclose(by_id[products[5].pk], vectors[5], atol=2e-3)
