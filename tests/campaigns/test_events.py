"""Tracking: impressions, clicks and conversions with attribution, de-duplication and bot filtering."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from django.template import Context, Template
from django.test import Client, RequestFactory

from campaigns.models import Campaign, CampaignEvent
from campaigns.tracking import Attribution, make_attribution_token, new_session_key
from tests.campaigns.helpers import BROWSER_UA, unit

pytestmark = pytest.mark.django_db


def shopper() -> Client:
    return Client(headers={"user-agent": BROWSER_UA})


def click_link(campaign: Campaign, product, **params: str) -> str:
    query = "&".join([f"cr={campaign.creatives.get().pk}", *(f"{k}={v}" for k, v in params.items())])
    return f"/c/{campaign.slug}/go/{product.pk}/?{query}"


def post_event(client: Client, payload: dict, **headers):
    return client.post("/c/events/", data=json.dumps(payload), content_type="application/json", **headers)


def test_reloads_are_counted_once_and_new_sessions_again(vector_product, live_campaign):
    vector_product(unit(1, 0, 0, 0))
    campaign = live_campaign()
    first, second = shopper(), shopper()
    for _ in range(3):
        assert first.get(f"/c/{campaign.slug}/?utm_source=news").status_code == 200
    second.get(f"/c/{campaign.slug}/")

    impressions = CampaignEvent.objects.filter(kind="impression")
    assert impressions.count() == 2
    assert len({event.session_key for event in impressions}) == 2
    assert impressions.get(session_key=first.cookies["lk_sid"].value).utm == {"utm_source": "news"}


def test_bots_are_not_counted(vector_product, live_campaign):
    vector_product(unit(1, 0, 0, 0))
    campaign = live_campaign()
    product = vector_product(unit(0, 1, 0, 0))
    googlebot = Client(
        headers={"user-agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"}
    )
    assert googlebot.get(f"/c/{campaign.slug}/").status_code == 200
    assert googlebot.get(click_link(campaign, product)).status_code == 302
    assert Client().get(f"/c/{campaign.slug}/").status_code == 200  # no user agent at all
    assert not CampaignEvent.objects.exists()


def test_clicks_are_attributed_and_de_duplicated(vector_product, live_campaign):
    polo = vector_product(unit(1, 0, 0, 0))
    shirt = vector_product(unit(0.9, 0.3, 0, 0))
    campaign = live_campaign()
    client = shopper()
    client.get(f"/c/{campaign.slug}/")
    session_key = client.cookies["lk_sid"].value

    for _ in range(2):  # a double click
        response = client.get(click_link(campaign, polo, utm_source="meta"))
        assert response.status_code == 302
    client.get(click_link(campaign, shirt))

    clicks = CampaignEvent.objects.filter(kind="click").order_by("pk")
    assert [(c.product_id, c.session_key, c.variant, c.creative_id) for c in clicks] == [
        (polo.pk, session_key, "visual", campaign.creatives.get().pk),
        (shirt.pk, session_key, "visual", campaign.creatives.get().pk),
    ]
    assert clicks[0].utm == {"utm_source": "meta"}
    assert "lk_attr" in client.cookies


def test_conversions_reported_by_the_store_are_attributed_to_the_click(
    vector_product, live_campaign, settings
):
    # Product links go to the source store's pages (another host) instead of the bundled storefront.
    settings.LOOKALIKE = {"PRODUCT_FIELDS": {"url": "url"}}
    product = vector_product(unit(1, 0, 0, 0), title="Polo")
    product.url = "https://store.example/products/polo?colour=red"
    product.save()
    campaign = live_campaign(control_share_pct=0)
    client = shopper()
    client.get(f"/c/{campaign.slug}/")
    redirect = client.get(click_link(campaign, product, utm_source="google"))

    # Another host: the attribution token travels in the URL for the store to hand back.
    location = redirect["Location"]
    assert location.startswith("https://store.example/products/polo?colour=red&utm_source=google&lk_token=")
    token = parse_qs(urlsplit(location).query)["lk_token"][0]
    store_server = Client()  # the store calls from its own server: no cookies, any user agent

    added = post_event(store_server, {"token": token, "kind": "add_to_cart", "product_id": product.pk})
    assert added.status_code == 201 and added.json() == {"recorded": True}
    again = post_event(store_server, {"token": token, "kind": "add_to_cart", "product_id": product.pk})
    assert again.status_code == 200 and again.json() == {"recorded": False}
    bought = post_event(
        store_server, {"token": token, "kind": "purchase", "product_id": product.pk, "order_id": "A1"}
    )
    assert bought.status_code == 201
    second_order = post_event(
        store_server, {"token": token, "kind": "purchase", "product_id": product.pk, "order_id": "A2"}
    )
    assert second_order.json() == {"recorded": True}  # a different order is a different purchase

    conversions = CampaignEvent.objects.exclude(kind__in=["impression", "click"]).order_by("pk")
    assert [e.kind for e in conversions] == ["add_to_cart", "purchase", "purchase"]
    assert {(e.campaign_id, e.creative_id, e.variant, e.session_key) for e in conversions} == {
        (campaign.pk, campaign.creatives.get().pk, "visual", client.cookies["lk_sid"].value)
    }
    assert "Access-Control-Allow-Origin" in added


def test_event_endpoint_refuses_bad_requests(vector_product, live_campaign, settings):
    product = vector_product(unit(1, 0, 0, 0))
    campaign = live_campaign()
    token = make_attribution_token(
        Attribution(
            campaign_id=campaign.pk, creative_id=None, variant="visual", session_key=new_session_key()
        )
    )
    client = Client()
    assert post_event(client, {"token": token + "x", "kind": "purchase"}).status_code == 403
    assert post_event(client, {"token": token, "kind": "refund"}).status_code == 400
    assert (
        post_event(client, {"token": token, "kind": "purchase", "product_id": "12; drop"}).status_code == 400
    )
    assert post_event(client, {"token": token, "kind": "purchase", "product_id": 10**9}).status_code == 400
    assert client.post("/c/events/", data="{not json", content_type="application/json").status_code == 400
    assert client.post("/c/events/", data="x" * 5000, content_type="text/plain").status_code == 413
    assert client.get("/c/events/").status_code == 405
    assert client.options("/c/events/").status_code == 204
    assert not CampaignEvent.objects.exists()

    # text/plain, as navigator.sendBeacon sends it, is accepted.
    body = json.dumps({"token": token, "kind": "purchase", "product_id": product.pk})
    beacon = client.post("/c/events/", data=body, content_type="text/plain")
    assert beacon.status_code == 201

    settings.CAMPAIGNS = {"ATTRIBUTION_MAX_AGE_S": -1}
    expired = post_event(client, {"token": token, "kind": "add_to_cart"})
    assert expired.status_code == 403 and "expired" in expired.json()["error"]


def test_template_tag_records_conversions_for_shoppers_from_a_campaign(vector_product, live_campaign):
    product = vector_product(unit(1, 0, 0, 0))
    campaign = live_campaign()
    client = shopper()
    client.get(f"/c/{campaign.slug}/")
    client.get(click_link(campaign, product))
    template = Template(
        "{% load campaign_tags %}{% campaign_event 'add_to_cart' product %}[{% campaign_token %}]"
    )

    request = RequestFactory(headers={"user-agent": BROWSER_UA}).get("/cart/")
    request.COOKIES = {name: morsel.value for name, morsel in client.cookies.items()}
    output = template.render(Context({"request": request, "product": product}))
    template.render(Context({"request": request, "product": product}))  # the cart page reloaded

    assert output == f"[{client.cookies['lk_attr'].value}]"
    event = CampaignEvent.objects.get(kind="add_to_cart")
    assert (event.product_id, event.session_key) == (product.pk, client.cookies["lk_sid"].value)

    stranger = RequestFactory(headers={"user-agent": BROWSER_UA}).get("/cart/")
    assert template.render(Context({"request": stranger, "product": product})) == "[]"
    assert CampaignEvent.objects.filter(kind="add_to_cart").count() == 1


def test_clicks_on_a_campaign_that_is_not_running_still_redirect_but_are_not_counted(
    vector_product, live_campaign
):
    product = vector_product(unit(1, 0, 0, 0))
    campaign = live_campaign(status=Campaign.Status.DRAFT)
    response = shopper().get(click_link(campaign, product))
    assert response.status_code == 302 and response["Location"] == f"/products/{product.pk}/"
    assert not CampaignEvent.objects.exists()
