"""End to end with real services: a creative saved → embedded by a Celery worker → its landing page shows the
nearest in-stock products. Real photos: one photo of a psychobunny product is the ad, the store sells the
product's other photos (one product each) among photos of other products."""

from __future__ import annotations

import csv
import random
import re
import time
from collections import defaultdict

import pytest
from django.test import Client

from campaigns.models import Campaign, Creative
from campaigns.services import save_creative
from recommendations.conf import app_setting
from recommendations.models import ProductEmbedding
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


def test_creative_is_embedded_by_a_worker_and_its_landing_page_shows_the_same_product(
    celery_worker, data_dir, store
):
    from recommendations.services import embed_images, prepare_space

    images = data_dir / "psychobunny" / "images"
    shots = photos_by_handle(data_dir)
    target = shots[HANDLE]
    others = sorted(handle for handle in shots if handle != HANDLE)
    distractor_files = [min(shots[h].values()) for h in random.Random(2024).sample(others, DISTRACTORS)]

    image_ids = []
    same_product_in_stock, same_product_sold_out = [], None
    for shot in ("1", "2", "3", "4", "F2"):
        data = (images / target[shot]).read_bytes()
        in_stock = shot != "3"  # a sold-out photo that would otherwise be on the page
        product = create_product(
            store=store, title=f"Bennett swim shorts {shot}", image=None, in_stock=in_stock
        )
        image_ids.append(add_image(product, data, name=target[shot]).pk)
        if in_stock:
            same_product_in_stock.append(product.pk)
        else:
            same_product_sold_out = product.pk
    for name in distractor_files:
        data = (images / name).read_bytes()
        product = create_product(store=store, title=f"Other {name}", image=None)
        image_ids.append(add_image(product, data, name=name).pk)
    # The embedding pipeline, in this process: the first space of the configured encoder becomes active.
    space = prepare_space(app_setting("ENCODER"), app_setting("WEIGHTS"))
    report = embed_images(image_ids, space=space)
    assert space.state == "active" and not report.failed
    assert ProductEmbedding.objects.filter(space=space).count() == len(image_ids)

    campaign = Campaign.objects.create(
        name="Swim shorts", slug="swim", status=Campaign.Status.LIVE, product_count=8
    )
    creative = save_creative(
        creative=Creative(campaign=campaign, name="Amber swim shorts ad", slug="amber"),
        image_data=(images / target[CREATIVE_SHOT]).read_bytes(),
    )
    deadline = time.monotonic() + 300  # the worker builds its encoder first
    while creative.embedding_status == Creative.EmbeddingStatus.PENDING and time.monotonic() < deadline:
        time.sleep(0.5)
        creative.refresh_from_db()
    assert creative.embedding_status == Creative.EmbeddingStatus.READY, creative.embedding_error
    assert creative.space_id == space.pk and len(creative.vector) == space.dimensions

    response = Client(headers={"user-agent": BROWSER_UA}).get("/c/swim/")
    assert 'data-variant="visual"' in response.content.decode()
    shown = shown_product_ids(response)
    assert len(shown) == 8
    assert set(same_product_in_stock) <= set(shown), (shown, same_product_in_stock)
    assert same_product_sold_out not in shown
