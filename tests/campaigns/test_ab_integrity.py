"""A/B integrity: a click counts for the variant its session was assigned (never for one named in the URL),
the assignment cannot be computed without the secret key, and one attribution token is credited at most
``MAX_CONVERSIONS`` purchases."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client, override_settings

from campaigns import tracking
from campaigns.models import CampaignEvent, Creative
from tests.campaigns.helpers import BROWSER_UA, unit

pytestmark = pytest.mark.django_db


def shopper() -> Client:
    return Client(headers={"user-agent": BROWSER_UA})


def test_thirty_forged_control_clicks_count_for_the_assigned_variant(vector_product, live_campaign):
    product = vector_product(unit(1, 0, 0, 0))
    campaign = live_campaign(control_share_pct=0)  # every session is in the visual variant
    creative = campaign.creatives.get()

    for _ in range(30):
        response = shopper().get(f"/c/{campaign.slug}/go/{product.pk}/?cr={creative.pk}&v=control")
        assert response.status_code == 302

    clicks = CampaignEvent.objects.filter(kind="click")
    assert clicks.count() == 30
    assert set(clicks.values_list("variant", flat=True)) == {"visual"}


def test_a_click_has_the_variant_of_the_landing_page_its_session_saw(vector_product, live_campaign):
    product = vector_product(unit(1, 0, 0, 0))
    campaign = live_campaign(control_share_pct=50)
    creative = campaign.creatives.get()
    for _ in range(12):
        client = shopper()
        client.get(f"/c/{campaign.slug}/")
        seen = CampaignEvent.objects.filter(kind="impression").latest("pk").variant
        forged = "visual" if seen == "control" else "control"
        client.get(f"/c/{campaign.slug}/go/{product.pk}/?cr={creative.pk}&v={forged}")
        assert CampaignEvent.objects.filter(kind="click").latest("pk").variant == seen


def test_clicks_fall_back_while_the_creative_is_not_embedded(vector_product, live_campaign):
    product = vector_product(unit(1, 0, 0, 0))
    campaign = live_campaign(control_share_pct=0)
    creative = campaign.creatives.get()
    Creative.objects.filter(pk=creative.pk).update(embedding_status=Creative.EmbeddingStatus.PENDING)

    shopper().get(f"/c/{campaign.slug}/go/{product.pk}/?cr={creative.pk}&v=visual")

    assert CampaignEvent.objects.get(kind="click").variant == "fallback"


def test_the_assignment_is_keyed_with_the_secret_key():
    keys = [tracking.new_session_key() for _ in range(50)]

    def buckets() -> list[int]:
        return [tracking.assignment_bucket(campaign_id=1, session_key=key) for key in keys]

    with override_settings(SECRET_KEY="one-secret-" * 5):
        first = buckets()
    with override_settings(SECRET_KEY="another-secret-" * 5):
        second = buckets()
    assert first != second


def test_one_token_is_credited_at_most_max_conversions_purchases(vector_product, live_campaign, settings):
    # Product links go to the source store's pages, so the token travels in the URL.
    settings.LOOKALIKE = {"PRODUCT_FIELDS": {"url": "url"}}
    product = vector_product(unit(1, 0, 0, 0))
    product.url = "https://store.example/products/polo"
    product.save()
    campaign = live_campaign()
    redirect = shopper().get(f"/c/{campaign.slug}/go/{product.pk}/?cr={campaign.creatives.get().pk}")
    token = parse_qs(urlsplit(redirect["Location"]).query)["lk_token"][0]

    recorded = []
    for order in range(10):
        body = {"token": token, "kind": "purchase", "product_id": product.pk, "order_id": f"order-{order}"}
        answer = Client().post("/c/events/", data=json.dumps(body), content_type="application/json")
        recorded.append(answer.json()["recorded"])

    assert recorded == [True] * 3 + [False] * 7  # CAMPAIGNS["MAX_CONVERSIONS"]["purchase"] = 3
    assert CampaignEvent.objects.filter(kind="purchase").count() == 3
