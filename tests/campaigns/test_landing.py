"""Landing pages: filters, pins, exclusions, variants, lifecycle, parameters and the page cache."""

from __future__ import annotations

import re
import time
from decimal import Decimal

import numpy as np
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from campaigns.models import Campaign, CampaignEvent, ControlProduct, Creative, PinnedProduct
from campaigns.services import catalog_version, save_creative
from recommendations.models import EmbeddingSpace, ProductEmbedding
from tests.campaigns.helpers import BROWSER_UA, embed_as, shown_product_ids, unit
from tests.factories import jpeg_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def shopper() -> Client:
    return Client(headers={"user-agent": BROWSER_UA})


def test_nearest_in_stock_products_with_pins_first_and_exclusions_never(
    vector_product, live_campaign, shopper
):
    near = vector_product(unit(1, 0, 0, 0), title="Near")
    close = vector_product(unit(0.9, 0.2, 0, 0), title="Close")
    far = vector_product(unit(0, 1, 0, 0), title="Far")
    sold_out = vector_product(unit(1, 0, 0, 0), title="Sold out", in_stock=False)
    excluded = vector_product(unit(1, 0.05, 0, 0), title="Excluded")
    pinned = vector_product(unit(0, 0, 1, 0), title="Pinned")
    pinned_sold_out = vector_product(unit(0, 0, 0, 1), title="Pinned but sold out", in_stock=False)
    campaign = live_campaign(unit(1, 0, 0, 0), product_count=4)
    campaign.excluded_products.add(excluded)
    PinnedProduct.objects.create(campaign=campaign, product=pinned_sold_out, position=0)
    PinnedProduct.objects.create(campaign=campaign, product=pinned, position=1)

    response = shopper.get(f"/c/{campaign.slug}/")

    assert response.status_code == 200
    assert shown_product_ids(response) == [pinned.pk, near.pk, close.pk, far.pk]
    assert sold_out.pk not in shown_product_ids(response)
    assert 'data-variant="visual"' in response.content.decode()


def test_price_store_and_category_filters(vector_product, live_campaign, shopper, store):
    from shop.models import Category, Store

    polos = Category.from_path(["Men", "Polos"])
    shirts = Category.from_path(["Men", "Shirts"])
    women = Category.from_path(["Women"])
    other_store = Store.objects.create(name="Elsewhere")
    polo = vector_product(unit(1, 0, 0, 0), category=polos, price="30.00")
    shirt = vector_product(unit(1, 0.1, 0, 0), category=shirts, price="45.00")
    vector_product(unit(1, 0, 0, 0), category=women, price="30.00")  # wrong category
    vector_product(unit(1, 0, 0, 0), category=polos, price="90.00")  # too expensive
    vector_product(unit(1, 0, 0, 0), category=polos, price="30.00", store=other_store)  # other store
    men = polos.parent
    campaign = live_campaign(unit(1, 0, 0, 0), store=store, min_price=Decimal("10"), max_price=Decimal("50"))
    campaign.categories.add(men)  # the whole subtree: polos and shirts

    assert shown_product_ids(shopper.get(f"/c/{campaign.slug}/")) == [polo.pk, shirt.pk]


def test_utm_parameters_and_click_ids_travel_to_the_product_page(vector_product, live_campaign, shopper):
    product = vector_product(unit(1, 0, 0, 0))
    campaign = live_campaign()

    response = shopper.get(f"/c/{campaign.slug}/?utm_source=google&utm_campaign=polo&gclid=Cj0&email=a@b.c")
    html = response.content.decode()
    creative = campaign.creatives.get()
    link = f"/c/{campaign.slug}/go/{product.pk}/?cr={creative.pk}&amp;utm_source=google"
    assert link in html
    assert "gclid=Cj0" in html and "email" not in html

    redirect = shopper.get(link.replace("&amp;", "&") + "&utm_campaign=polo&gclid=Cj0")
    assert redirect.status_code == 302
    assert redirect["Location"] == f"/products/{product.pk}/?utm_source=google&utm_campaign=polo&gclid=Cj0"


def test_each_creative_has_its_own_landing_page(vector_product, live_campaign, shopper, space):
    red = vector_product(unit(1, 0, 0, 0))
    blue = vector_product(unit(0, 1, 0, 0))
    campaign = live_campaign(unit(1, 0, 0, 0), product_count=1)
    second = save_creative(
        creative=Creative(campaign=campaign, name="Blue ad", slug="blue", position=1),
        image_data=jpeg_bytes((0, 0, 250), 80),
    )
    embed_as(second, unit(0, 1, 0, 0), space)

    assert shown_product_ids(shopper.get(f"/c/{campaign.slug}/")) == [red.pk]
    assert shown_product_ids(shopper.get(f"/c/{campaign.slug}/ad/")) == [red.pk]
    assert shown_product_ids(shopper.get(f"/c/{campaign.slug}/blue/")) == [blue.pk]
    assert shopper.get(f"/c/{campaign.slug}/nope/").status_code == 404


def test_page_is_cached_until_a_shown_product_goes_out_of_stock(
    vector_product, live_campaign, shopper, django_capture_on_commit_callbacks
):
    first = vector_product(unit(1, 0, 0, 0))
    second = vector_product(unit(0.8, 0.6, 0, 0))
    third = vector_product(unit(0, 1, 0, 0))
    campaign = live_campaign(product_count=2)
    url = f"/c/{campaign.slug}/"
    assert shown_product_ids(shopper.get(url)) == [first.pk, second.pk]

    # A vector change sends no signal: the cached page is served as it was.
    ProductEmbedding.objects.filter(product=third).update(vector=np.asarray(unit(1, 0.01, 0, 0)))
    assert shown_product_ids(shopper.get(url)) == [first.pk, second.pk]

    # Saving a product without changing its stock keeps the catalog version (and the cache).
    version = catalog_version()
    with django_capture_on_commit_callbacks(execute=True):
        first.title = "Renamed"
        first.save()
    assert catalog_version() == version
    assert shown_product_ids(shopper.get(url)) == [first.pk, second.pk]

    # A stock change bumps the version after commit; the page is computed again.
    with django_capture_on_commit_callbacks(execute=True):
        second.in_stock = False
        second.save()
    assert catalog_version() != version
    assert shown_product_ids(shopper.get(url)) == [first.pk, third.pk]


def test_bulk_stock_updates_without_signals_are_caught_on_a_cache_hit(
    vector_product, live_campaign, shopper, settings
):
    from shop.models import Product

    # Checked on every request:
    settings.CAMPAIGNS = {**getattr(settings, "CAMPAIGNS", {}), "STOCK_RECHECK_S": 0}
    first = vector_product(unit(1, 0, 0, 0))
    second = vector_product(unit(0.8, 0.6, 0, 0))
    third = vector_product(unit(0, 1, 0, 0))
    campaign = live_campaign(product_count=2)
    url = f"/c/{campaign.slug}/"
    assert shown_product_ids(shopper.get(url)) == [first.pk, second.pk]

    Product.objects.filter(pk=first.pk).update(in_stock=False)  # no signal, version unchanged
    assert shown_product_ids(shopper.get(url)) == [second.pk, third.pk]


def test_bulk_stock_updates_are_seen_within_the_recheck_window(
    vector_product, live_campaign, shopper, settings
):
    from shop.models import Product

    settings.CAMPAIGNS = {**getattr(settings, "CAMPAIGNS", {}), "STOCK_RECHECK_S": 1}
    first = vector_product(unit(1, 0, 0, 0))
    second = vector_product(unit(0.8, 0.6, 0, 0))
    third = vector_product(unit(0, 1, 0, 0))
    campaign = live_campaign(product_count=2)
    url = f"/c/{campaign.slug}/"
    assert shown_product_ids(shopper.get(url)) == [first.pk, second.pk]  # computed: nothing to check
    assert shown_product_ids(shopper.get(url)) == [first.pk, second.pk]  # checked, then trusted for 1 s
    with CaptureQueriesContext(connection) as queries:
        assert shown_product_ids(shopper.get(url)) == [first.pk, second.pk]
    assert not [query for query in queries.captured_queries if "shop_product" in query["sql"]]

    Product.objects.filter(pk=first.pk).update(in_stock=False)  # no signal, version unchanged
    time.sleep(1.2)  # the window is a Valkey expiry
    assert shown_product_ids(shopper.get(url)) == [second.pk, third.pk]


def test_campaign_and_creative_edits_invalidate_the_page(vector_product, live_campaign, shopper, space):
    product = vector_product(unit(1, 0, 0, 0))
    other = vector_product(unit(0, 1, 0, 0))
    campaign = live_campaign(product_count=1, headline="Summer polos")
    url = f"/c/{campaign.slug}/"
    assert "Summer polos" in shopper.get(url).content.decode()

    campaign.headline = "Autumn polos"
    campaign.save()
    response = shopper.get(url)
    assert "Autumn polos" in response.content.decode()
    assert shown_product_ids(response) == [product.pk]

    embed_as(campaign.creatives.get(), unit(0, 1, 0, 0), space)  # a new vector for the creative
    assert shown_product_ids(shopper.get(url)) == [other.pk]


def test_creative_without_a_vector_in_the_active_space_gets_the_fallback_and_is_requeued(
    vector_product, live_campaign, shopper, django_capture_on_commit_callbacks
):
    vector_product(unit(1, 0, 0, 0))
    campaign = live_campaign()
    old_space = EmbeddingSpace.objects.get(state="active")
    old_space.state = "retired"
    old_space.save()
    new_space = EmbeddingSpace.objects.create(encoder="test2", weights_id="t", dimensions=4, state="active")
    assert not campaign.creatives.get().is_ready_for(new_space.pk)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = shopper.get(f"/c/{campaign.slug}/")
    assert response.status_code == 200
    assert 'data-variant="fallback"' in response.content.decode()
    assert len(callbacks) == 1  # the embedding task, queued once the request's transaction commits
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        shopper.get(f"/c/{campaign.slug}/")
    assert callbacks == []  # not again within REQUEUE_INTERVAL_S
    assert CampaignEvent.objects.get(kind="impression").variant == "fallback"


def test_control_variant_shows_the_picked_list_or_the_category_listing(
    vector_product, live_campaign, shopper
):
    from shop.models import Category

    shirts = Category.from_path(["Shirts"])
    visual_match = vector_product(unit(1, 0, 0, 0))
    picked_b = vector_product(unit(0, 1, 0, 0), title="B")
    picked_a = vector_product(unit(0, 0, 1, 0), title="A")
    picked_sold_out = vector_product(unit(0, 0, 1, 0), in_stock=False)
    in_category = vector_product(unit(0, 0, 0, 1), category=shirts)
    campaign = live_campaign(control_share_pct=100, control_kind=Campaign.ControlKind.PRODUCTS)
    for position, product in enumerate([picked_b, picked_sold_out, picked_a]):
        ControlProduct.objects.create(campaign=campaign, product=product, position=position)
    PinnedProduct.objects.create(campaign=campaign, product=visual_match)  # pins belong to the visual page

    response = shopper.get(f"/c/{campaign.slug}/")
    assert 'data-variant="control"' in response.content.decode()
    assert shown_product_ids(response) == [picked_b.pk, picked_a.pk]

    campaign.control_kind = Campaign.ControlKind.CATEGORY
    campaign.control_category = shirts
    campaign.save()
    assert shown_product_ids(shopper.get(f"/c/{campaign.slug}/")) == [in_category.pk]


def test_ended_campaign_redirects_to_its_fallback_keeping_utm(live_campaign, shopper):
    campaign = live_campaign(status=Campaign.Status.ENDED, fallback_url="/category/men/")
    response = shopper.get(f"/c/{campaign.slug}/?utm_source=ads&gclid=1")
    assert response.status_code == 302
    assert response["Location"] == "/category/men/?utm_source=ads&gclid=1"

    from datetime import timedelta

    from django.utils import timezone

    past = live_campaign(ends_at=timezone.now() - timedelta(minutes=1))
    assert shopper.get(f"/c/{past.slug}/")["Location"] == "/"


def test_draft_is_hidden_from_shoppers_and_previewed_by_staff(
    vector_product, live_campaign, shopper, admin_client
):
    vector_product(unit(1, 0, 0, 0))
    campaign = live_campaign(status=Campaign.Status.DRAFT)
    assert shopper.get(f"/c/{campaign.slug}/").status_code == 404

    response = admin_client.get(f"/c/{campaign.slug}/?variant=control")
    assert response.status_code == 200
    assert "Preview of a campaign that is not live" in response.content.decode()
    assert 'data-variant="control"' in response.content.decode()
    assert not CampaignEvent.objects.exists()  # previews are not counted


def test_ab_assignment_is_sticky_per_visitor_and_splits_traffic(vector_product, live_campaign):
    vector_product(unit(1, 0, 0, 0))
    campaign = live_campaign(control_share_pct=50, control_kind=Campaign.ControlKind.PRODUCTS)
    seen = []
    for _ in range(40):
        visitor = Client(headers={"user-agent": BROWSER_UA})
        variants = {
            re.search(r'data-variant="(\w+)"', visitor.get(f"/c/{campaign.slug}/").content.decode()).group(1)
            for _ in range(3)
        }
        assert len(variants) == 1  # the same visitor always sees the same variant
        seen.append(variants.pop())
    assert set(seen) == {"visual", "control"}
    impressions = CampaignEvent.objects.filter(kind="impression")
    assert impressions.count() == 40  # reloads counted once
    assert impressions.filter(variant="control").count() == seen.count("control")


def test_a_cached_landing_creative_follows_the_campaign_and_its_deletion_at_once(
    vector_product, live_campaign, shopper
):
    vector_product(unit(1, 0, 0, 0))
    campaign = live_campaign()
    url = f"/c/{campaign.slug}/"
    assert shopper.get(url).status_code == 200  # the creative and campaign are cached now

    campaign.status = campaign.Status.DRAFT  # taken down: shoppers get nothing
    campaign.save()
    assert shopper.get(url).status_code == 404

    campaign.status = campaign.Status.LIVE
    campaign.save()
    assert shopper.get(url).status_code == 200
    campaign.creatives.get().delete()
    assert shopper.get(url).status_code == 404
    assert shopper.get("/c/no-such-campaign/").status_code == 404


@pytest.fixture
def visitor_layout(settings, tmp_path):
    """A shop layout that shows something of the visitor (here a request header), and one without a head
    block, in a template folder of their own."""
    (tmp_path / "visitor_base.html").write_text(
        "<title>{% block title %}{% endblock %}</title>{% block head %}{% endblock %}"
        '<p class="who">who={{ request.headers.x_who|default:"nobody" }}</p>'
        "<main>{% block content %}{% endblock %}</main>"
    )
    (tmp_path / "headless_base.html").write_text(
        "<title>{% block title %}{% endblock %}</title><main>{% block content %}{% endblock %}</main>"
        "<p>who={{ request.headers.x_who }}</p>"
    )
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}]
    return lambda name: setattr(
        settings, "LOOKALIKE", {**getattr(settings, "LOOKALIKE", {}), "BASE_TEMPLATE": name}
    )


@pytest.mark.parametrize("cache_layout", [True, False])
def test_the_shops_layout_is_rendered_per_visitor_unless_cached(
    vector_product, live_campaign, shopper, settings, visitor_layout, cache_layout
):
    product = vector_product(unit(1, 0, 0, 0))
    campaign = live_campaign(product_count=1, headline="Summer polos")
    settings.CAMPAIGNS = {**getattr(settings, "CAMPAIGNS", {}), "CACHE_LAYOUT": cache_layout}
    visitor_layout("visitor_base.html")
    url = f"/c/{campaign.slug}/?utm_source=ads"
    for who in ("ann", "bob"):
        response = shopper.get(url, headers={"X-Who": who})
        page = response.content.decode()
        assert re.search(r"<title>\s*Summer polos\s*</title>", page)
        assert "campaign-hero" in page.split("<main>")[1]  # the content block inside the layout
        assert shown_product_ids(response) == [product.pk]
        assert "utm_source=ads" in page
        # Cached: rendered once without a request, so nobody's header is in it.
        assert f"who={who}" in page if not cache_layout else "who=nobody" in page


def test_a_layout_without_the_three_blocks_is_rendered_per_request(
    vector_product, live_campaign, shopper, settings, visitor_layout, caplog
):
    vector_product(unit(1, 0, 0, 0))
    campaign = live_campaign(product_count=1, headline="Summer polos")
    settings.CAMPAIGNS = {**getattr(settings, "CAMPAIGNS", {}), "CACHE_LAYOUT": True}
    visitor_layout("headless_base.html")
    page = shopper.get(f"/c/{campaign.slug}/", headers={"X-Who": "ann"}).content.decode()
    assert "who=ann" in page and "campaign-hero" in page
    assert "does not show the title, head and content blocks" in caplog.text
