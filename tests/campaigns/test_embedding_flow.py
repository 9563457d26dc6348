"""End to end with real services: a creative saved → embedded by a Celery worker → its landing page shows the
nearest in-stock products. Real photos: one photo of a psychobunny product is the ad, the store sells the
product's other photos (one product each) among photos of other products."""

from __future__ import annotations

import csv
import random
import re
import time
from collections import defaultdict

import numpy as np
import pytest
from django.test import Client

from campaigns.models import Campaign, Creative
from campaigns.services import save_creative
from recommendations.conf import app_setting
from recommendations.models import EmbeddingSpace, ProductEmbedding
from tests.campaigns.helpers import BROWSER_UA, shown_product_ids
from tests.factories import add_image, create_product

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

HANDLE = "mens-bennett-swim-shorts-b6w413r1po-831-amber-frost"
CREATIVE_SHOT = "F1"  # the flat product photo, as ads often use
DISTRACTORS = 30


def photos_by_handle(data_dir) -> dict[str, dict[str, str]]:
    """handle → {shot ("1".."4" model photos, "F1" flat, "F2" detail) → file name}."""
    shots: dict[str, dict[str, str]] = defaultdict(dict)
    with open(data_dir / "psychobunny" / "labels.csv", newline="") as stream:
        for row in csv.DictReader(stream):
            match = re.search(r"_([A-Z0-9]+)\.jpg", row["URL"])
            shots[row["handle"]][match.group(1) if match else row["image"]] = row["image"]
    return shots


def embed_catalog(products_and_photos, encoder) -> EmbeddingSpace:
    """The active space and product vectors, made with the configured encoder (as the embedding pipeline
    would): the worker then embeds the creative with the same encoder."""
    from recommendations.imaging import load_image

    space = EmbeddingSpace.objects.create(
        encoder=app_setting("ENCODER"), weights_id=encoder.weights_id, dimensions=encoder.dimensions, state="active"
    )
    vectors = encoder.embed([load_image(data) for _, data in products_and_photos])
    ProductEmbedding.objects.bulk_create(
        ProductEmbedding(space=space, product=product, vector=np.asarray(vector))
        for (product, _), vector in zip(products_and_photos, vectors, strict=True)
    )
    return space


def test_creative_is_embedded_by_a_worker_and_its_landing_page_shows_the_same_product(
    celery_worker, data_dir, store
):
    from recommendations.encoders import get_encoder

    images = data_dir / "psychobunny" / "images"
    shots = photos_by_handle(data_dir)
    target = shots[HANDLE]
    others = sorted(handle for handle in shots if handle != HANDLE)
    distractor_files = [min(shots[h].values()) for h in random.Random(2024).sample(others, DISTRACTORS)]

    catalog = []  # (product, photo bytes)
    same_product_in_stock, same_product_sold_out = [], None
    for shot in ("1", "2", "3", "4", "F2"):
        data = (images / target[shot]).read_bytes()
        in_stock = shot != "3"  # a sold-out photo that would otherwise be on the page
        product = create_product(store=store, title=f"Bennett swim shorts {shot}", image=None, in_stock=in_stock)
        add_image(product, data, name=target[shot])
        catalog.append((product, data))
        if in_stock:
            same_product_in_stock.append(product.pk)
        else:
            same_product_sold_out = product.pk
    for name in distractor_files:
        data = (images / name).read_bytes()
        product = create_product(store=store, title=f"Other {name}", image=None)
        add_image(product, data, name=name)
        catalog.append((product, data))
    encoder = get_encoder(app_setting("ENCODER"), app_setting("WEIGHTS"), "cpu")
    embed_catalog(catalog, encoder)

    campaign = Campaign.objects.create(name="Swim shorts", slug="swim", status=Campaign.Status.LIVE, product_count=8)
    creative = save_creative(
        creative=Creative(campaign=campaign, name="Amber swim shorts ad", slug="amber"),
        image_data=(images / target[CREATIVE_SHOT]).read_bytes(),
    )
    deadline = time.monotonic() + 180
    while creative.embedding_status == Creative.EmbeddingStatus.PENDING and time.monotonic() < deadline:
        time.sleep(0.5)
        creative.refresh_from_db()
    assert creative.embedding_status == Creative.EmbeddingStatus.READY, creative.embedding_error
    assert creative.space.state == "active" and len(creative.vector) == encoder.dimensions

    response = Client(headers={"user-agent": BROWSER_UA}).get("/c/swim/")
    assert 'data-variant="visual"' in response.content.decode()
    shown = shown_product_ids(response)
    assert len(shown) == 8
    assert set(same_product_in_stock) <= set(shown), (shown, same_product_in_stock)
    assert same_product_sold_out not in shown
