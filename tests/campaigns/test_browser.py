"""A shopper's browser (Debian's Chromium) opens a landing page from an ad, clicks a product, is counted."""

from __future__ import annotations

import pytest

from campaigns.models import CampaignEvent
from tests.campaigns.helpers import BROWSER_UA, unit

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_landing_page_click_is_counted_and_keeps_the_ad_parameters(
    browser, live_server, vector_product, live_campaign
):
    polo = vector_product(unit(1, 0, 0, 0), title="Orange polo")
    vector_product(unit(0, 1, 0, 0), title="Navy shorts")
    campaign = live_campaign(unit(1, 0, 0, 0), headline="Polos that look like the ad")
    # A headless browser says "HeadlessChrome", which the bot filter ignores; a shopper's browser does not.
    context = browser.new_context(user_agent=BROWSER_UA)
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/c/{campaign.slug}/?utm_source=meta&utm_campaign=summer&fbclid=IwAR0")
        assert page.locator("h1").inner_text() == "Polos that look like the ad"
        cards = page.locator(".campaign-grid .product-card")
        assert cards.count() == 2
        assert cards.first.get_attribute("data-product-id") == str(polo.pk)

        with page.expect_navigation():
            cards.first.locator("a").click()

        assert (
            page.url
            == f"{live_server.url}/products/{polo.pk}/?utm_source=meta&utm_campaign=summer&fbclid=IwAR0"
        )
        assert page.locator("h1").inner_text() == "Orange polo"
    finally:
        context.close()

    click = CampaignEvent.objects.get(kind="click")
    impression = CampaignEvent.objects.get(kind="impression")
    assert (click.product_id, click.campaign_id, click.variant) == (polo.pk, campaign.pk, "visual")
    assert click.session_key == impression.session_key
    assert click.utm == {"utm_source": "meta", "utm_campaign": "summer"}
