"""compute_neighbours: the stored top-K equals brute force, replaces old rows, and feeds the selectors."""

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from recommendations import selectors
from recommendations.models import ProductNeighbours
from recommendations.neighbours import compute_neighbours, top_k_distinct_photos
from tests.recommendations.vectors import clustered_vectors, create_catalog, create_space

pytestmark = pytest.mark.django_db

DIMENSIONS = 16


def brute_force(vectors: np.ndarray, shas: list[list[str]], k: int) -> list[list[int]]:
    """Every row's neighbours the slow, obvious way: sort all rows, skip any sharing a photo."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    answer = []
    for row in range(len(vectors)):
        order = np.argsort(-(unit @ unit[row]), kind="stable")
        kept, blocked = [], set(shas[row])
        for candidate in order:
            if candidate == row or blocked & set(shas[candidate]):
                continue
            kept.append(int(candidate))
            blocked |= set(shas[candidate])
            if len(kept) == k:
                break
        answer.append(kept)
    return answer


def photos_with_duplicates(n: int) -> list[list[str]]:
    shas = [[f"own-{i}"] for i in range(n)]
    # A few byte-identical photos: 0/1/2 share one, 10 and 11 another (11 also has its own), 20-29 one more.
    for i in (0, 1, 2):
        shas[i].append("shared-a")
    shas[10].append("shared-b")
    shas[11] = ["shared-b", "own-11"]
    for i in range(20, 30):
        shas[i].append("shared-c")
    return shas


def test_top_k_with_photo_rules_equals_brute_force():
    vectors = clustered_vectors(300, DIMENSIONS, clusters=5, seed=1)
    shas = photos_with_duplicates(300)
    indices, scores = top_k_distinct_photos(vectors, shas, 6, block_rows=37)
    assert indices.tolist() == brute_force(vectors, shas, 6)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert np.allclose(scores, np.einsum("nd,nkd->nk", unit, unit[indices]), atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)

    # Nobody shares a photo: the same as plain exact top-k; too few rows: padded with -1.
    plain_shas = [[f"p{i}"] for i in range(300)]
    assert top_k_distinct_photos(vectors, plain_shas, 6)[0].tolist() == brute_force(vectors, plain_shas, 6)
    # Rows 0 and 1 show the same photo: neither lists the other, and row 2 lists only the better of them.
    tiny_shas = [["x"], ["x"], ["y"]]
    tiny, _ = top_k_distinct_photos(vectors[:3], tiny_shas, 4)
    assert tiny.tolist() == [row + [-1] * (4 - len(row)) for row in brute_force(vectors[:3], tiny_shas, 4)]
    assert [len(row) for row in brute_force(vectors[:3], tiny_shas, 4)] == [1, 1, 1]


def test_many_products_sharing_a_photo_fall_back_to_a_full_ranking():
    vectors = clustered_vectors(200, DIMENSIONS, clusters=1, spread=0.3, seed=2)
    # 150 products show one photo: far more than the extra candidates fetched, so rows are re-ranked alone.
    shas = [["common"] if i < 150 else [f"own-{i}"] for i in range(200)]
    indices, _ = top_k_distinct_photos(vectors, shas, 5)
    assert indices.tolist() == brute_force(vectors, shas, 5)


def test_stored_neighbours_equal_brute_force_and_replace_old_rows(store):
    space = create_space(DIMENSIONS)
    other_space = create_space(DIMENSIONS, state="retired", encoder="old")
    vectors = clustered_vectors(120, DIMENSIONS, clusters=4, seed=3)
    shas = photos_with_duplicates(120)
    products = create_catalog(store, vectors, space=space, shas=shas)
    ProductNeighbours.objects.create(
        space=other_space,
        product=products[0],
        neighbour_ids=[products[1].pk],
        scores=[0.1],
        computed_at="2020-01-01T00:00Z",
    )
    stored = selectors.load_space_vectors(space).vectors  # halfvec: what the database compares

    report = compute_neighbours(k=5, block_rows=50)
    again = compute_neighbours(k=5)

    assert report.products == 120 and report.rows_written == again.rows_written == 120 * 5
    assert ProductNeighbours.objects.filter(space=space).count() == 120  # one row per product
    assert ProductNeighbours.objects.filter(space=other_space).count() == 1  # other spaces untouched
    expected = brute_force(stored, shas, 5)
    for row, product in enumerate(products):
        neighbours = ProductNeighbours.objects.get(space=space, product=product)
        assert neighbours.neighbour_ids == [products[i].pk for i in expected[row]]
        assert len(neighbours.scores) == 5 and neighbours.scores == sorted(neighbours.scores, reverse=True)


def test_selectors_serve_the_stored_neighbours_same_as_live(store):
    space = create_space(DIMENSIONS)
    vectors = clustered_vectors(80, DIMENSIONS, clusters=3, seed=4)
    products = create_catalog(store, vectors, space=space, shas=photos_with_duplicates(80))
    call_command("compute_neighbours", k=8, no_progress=True)

    for product in products[:12]:
        stored = selectors.find_similar_products(product=product, limit=8)
        live = selectors.search_near_vector(
            vector=selectors.product_vectors([product.pk])[product.pk],
            limit=8,
            filters=selectors.ProductFilter().excluding([product.pk]),
            exclude_sha256s=selectors.load_space_vectors(space).image_sha256s[products.index(product)],
        )
        assert stored.source == selectors.PRECOMPUTED and live.source in (selectors.INDEX, selectors.EXACT)
        assert [i.product.pk for i in stored.items] == [i.product.pk for i in live.items]
        assert [i.score for i in stored.items] == pytest.approx([i.score for i in live.items], abs=2e-3)


def test_deleted_products_are_skipped_in_stored_neighbours(store):
    """Neighbour ids carry no foreign key: a product deleted after the run (through Django or behind its
    back) is skipped by the readers, and the next product moves up."""
    from django.db import connection

    from recommendations.models import ProductEmbedding

    space = create_space(DIMENSIONS)
    vectors = clustered_vectors(40, DIMENSIONS, clusters=2, seed=5)
    products = create_catalog(store, vectors, space=space)
    compute_neighbours(k=8)
    stored = ProductNeighbours.objects.get(space=space, product=products[1]).neighbour_ids
    by_pk = {product.pk: product for product in products}

    by_pk[stored[0]].delete()  # through Django: its own row goes with it
    assert not ProductNeighbours.objects.filter(product_id=stored[0]).exists()
    # A shop's own SQL removes the rows that point at the product, then the product.
    ProductEmbedding.objects.filter(product_id=stored[1]).delete()
    ProductNeighbours.objects.filter(product_id=stored[1]).delete()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM shop_productimage WHERE product_id = %s", [stored[1]])
        cursor.execute("DELETE FROM shop_product WHERE id = %s", [stored[1]])

    answer = selectors.find_similar_products(product=products[1], limit=5)
    assert answer.source == selectors.PRECOMPUTED
    assert [item.product.pk for item in answer.items] == stored[2:7]


def test_command_reports_and_refuses_bad_input(store, capsys):
    with pytest.raises(CommandError, match="No embedding space is active"):
        call_command("compute_neighbours", no_progress=True)
    with pytest.raises(CommandError, match="No embedding space with id"):
        call_command("compute_neighbours", space=999999, no_progress=True)
    space = create_space(DIMENSIONS, state="building")
    create_catalog(store, clustered_vectors(10, DIMENSIONS), space=space)
    call_command("compute_neighbours", space=space.pk, k=3)
    out = capsys.readouterr().out
    assert "10 products, top-3: 30 neighbours stored" in out
