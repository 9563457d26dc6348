"""Shopper-facing control over colour: "other colours" of a design, and a word on why a card matched."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from django.db import connection
from django.template import Context, Template
from django.test.utils import CaptureQueriesContext, override_settings
from django.urls import reverse
from PIL import Image

from recommendations import matching, selectors, services
from recommendations.models import ProductEmbedding
from shop.models import Category, Product
from tests.factories import add_image, create_product
from tests.recommendations.embedding_helpers import ENCODER
from tests.recommendations.test_looks_alike import jpeg, psychobunny_rows, recipe_settings


def import_colourways(store, data_dir, *, designs: int, with_design: bool = True) -> dict[str, list]:
    """One product per colourway (handle) from its first photo, with its design code and colour as an
    import writes them; returns design code -> products."""
    by_design: dict[str, list] = defaultdict(list)
    for row in psychobunny_rows(data_dir, designs=designs, per_handle=1):
        category = Category.from_path(["men", row["article_type"]])
        product = create_product(store=store, title=row["handle"], image=None, category=category)
        attributes = {"colour": row["colour_name"]}
        if with_design:
            attributes["design_code"] = row["design_code"]
        product.attributes = attributes
        product.save(update_fields=["attributes"])
        add_image(product, (data_dir / "psychobunny" / "images" / row["image"]).read_bytes())
        by_design[row["design_code"]].append(product)
    return by_design


def embed(recipe: str):
    with recipe_settings(recipe):
        space = services.prepare_space(ENCODER, "DEFAULT")
        services.embed_images(services.embeddable_image_ids(), space=space)
    return space


def pick_query(by_design: dict[str, list]):
    """A product of the design with the most colourways."""
    design = max(by_design, key=lambda code: (len(by_design[code]), code))
    return by_design[design][0], {p.pk for p in by_design[design][1:]}


@pytest.mark.django_db
def test_other_colours_are_the_designs_colourways_then_other_colours_never_the_same(store, data_dir):
    by_design = import_colourways(store, data_dir, designs=6)
    query, colourways = pick_query(by_design)
    assert len(colourways) >= 2
    # The query's own colourway under another design key (a re-listing): as similar as it gets.
    twin = create_product(store=store, title="re-listed", image=None, category=query.category)
    twin.attributes = {"design_code": "elsewhere"}
    twin.save(update_fields=["attributes"])
    with query.images.first().image.open() as photo:
        pixels = Image.open(photo).convert("RGB")
        # Other bytes (a byte-identical photo is dropped by its digest), the same colours.
        add_image(twin, jpeg(np.asarray(pixels.resize((pixels.width // 2, pixels.height // 2)))))
    space = embed("combined")
    found = matching.descriptors(ProductEmbedding.objects.values_list("product_id", flat=True), space=space)
    assert len(found) == ProductEmbedding.objects.filter(space=space).count()

    similar = selectors.find_similar_products(product=query, limit=12, explain=True)
    others = selectors.find_similar_products(product=query, limit=12, match="colourways", explain=True)

    ids = [item.product.pk for item in others.items]
    # The design's other colourways come first, all of them...
    assert set(ids[: len(colourways)]) == colourways
    # ...then only products whose colour differs from the query's: never a same-colour product.
    for pk in ids[len(colourways) :]:
        assert matching.colour_cosine(found[query.pk], found[pk]) < matching.OTHER_COLOUR_MAX_COSINE
    assert all(item.match != matching.SAME_COLOUR for item in others.items[len(colourways) :])
    # Group members are ranked by similarity among themselves.
    group_scores = [item.score for item in others.items[: len(colourways)]]
    assert group_scores == sorted(group_scores, reverse=True)
    assert query.pk not in ids and twin.pk not in ids
    assert matching.colour_cosine(found[query.pk], found[twin.pk]) >= matching.SAME_COLOUR_MIN_COSINE
    # The plain ranking shows the re-listed twin (same colour, same style) first; "other colours" never.
    assert similar.items[0].product.pk == twin.pk and similar.items[0].match == "same colour"
    # The plain ranking differs: it asks for colour, and labels its cards.
    assert [item.product.pk for item in similar.items] != ids
    for item in similar.items:
        expected = matching.match_label(
            found[query.pk], found[item.product.pk], same_kind=item.product.category_id == query.category_id
        )
        assert item.match == expected
    assert {item.match for item in similar.items} <= {"", "same colour", "same pattern", "same kind"}

    # A bounded number of queries, whatever the number of cards (no query per card or per candidate).
    counts = {}
    for limit in (3, 12):
        with CaptureQueriesContext(connection) as queries:
            selectors.find_similar_products(product=query.pk, limit=limit, match="colourways", explain=True)
        counts[limit] = len(queries)
    assert counts[3] == counts[12] <= 15, counts

    # The API: the parameter, the mode in the answer, a word per result.
    response = client_get(query.pk, {"match": "colourways", "limit": 12})
    assert response.status_code == 200
    body = response.json()
    assert body["match"] == "colourways"
    assert [row["id"] for row in body["results"]] == ids
    assert [row["match"] for row in body["results"]] == [item.match for item in others.items]
    default = client_get(query.pk, {"limit": 12}).json()
    assert default["match"] == "similar" and [row["id"] for row in default["results"]] == [
        item.product.pk for item in similar.items
    ]
    bad = client_get(query.pk, {"match": "<script>"})
    assert bad.status_code == 400 and "match" in bad.json()["errors"]

    # The widget: the parameter, its title and the words on the cards.
    html = Template(
        '{% load recommendation_tags %}{% similar_products product limit=12 match="colourways" %}'
    ).render(Context({"product": query}))
    assert 'data-match="colourways"' in html and "Other colours" in html
    shown = [int(pk) for pk in _attribute_values(html, "data-product-id")]
    assert shown == ids
    assert html.count('class="match-label"') == sum(1 for item in others.items if item.match)


def client_get(pk: int, params: dict):
    from django.test import Client

    return Client().get(reverse("recommendations:api-similar-products", args=[pk]), params)


def _attribute_values(html: str, name: str) -> list[str]:
    import re

    return re.findall(rf'{name}="([^"]*)"', html)


@pytest.mark.django_db
def test_without_colour_descriptors_other_colours_fall_back_to_the_design_group(store, data_dir):
    # The design group through a `group` role this time (here the brand field), not the attributes.
    by_design = import_colourways(store, data_dir, designs=3, with_design=False)
    for code, products in by_design.items():
        Product.objects.filter(pk__in=[p.pk for p in products]).update(brand=f"design {code}")
    query, colourways = pick_query(by_design)
    space = embed("cnn")
    assert not matching.has_descriptors(space)
    assert matching.design_group_ids(query.pk, filters=selectors.ProductFilter()) == []
    with override_settings(LOOKALIKE={"PRODUCT_FIELDS": {"group": "brand"}}):
        assert set(matching.design_group_ids(query.pk, filters=selectors.ProductFilter())) == colourways
        others = selectors.find_similar_products(product=query.pk, limit=8, match="colourways", explain=True)
    ids = [item.product.pk for item in others.items]
    assert set(ids[: len(colourways)]) == colourways
    # Then the ordinary ranking: nothing is lost for want of colour.
    assert len(ids) == min(8, ProductEmbedding.objects.filter(space=space).count() - 1)
    # Only the category can explain a match here.
    assert {item.match for item in others.items} <= {"", "same kind"}
    assert any(item.match == "same kind" for item in others.items)


def test_labels_follow_the_measured_thresholds():
    from recommendations import colour

    def descriptor(colour_part, pattern_part):
        return np.concatenate([colour_part, pattern_part]).astype(np.float32)

    red, blue = np.zeros(colour.COLOUR_DIMENSIONS), np.zeros(colour.COLOUR_DIMENSIONS)
    red[0], blue[1] = 1.0, 1.0
    plain, checks = np.zeros(colour.PATTERN_DIMENSIONS), np.zeros(colour.PATTERN_DIMENSIONS)
    plain[0], checks[1] = 1.0, 1.0
    assert matching.match_label(descriptor(red, plain), descriptor(red, checks)) == "same colour"
    assert matching.match_label(descriptor(red, plain), descriptor(blue, plain)) == "same pattern"
    assert (
        matching.match_label(descriptor(red, plain), descriptor(blue, checks), same_kind=True) == "same kind"
    )
    assert matching.match_label(descriptor(red, plain), descriptor(blue, checks)) == ""
    assert matching.match_label(None, descriptor(blue, checks)) == ""
