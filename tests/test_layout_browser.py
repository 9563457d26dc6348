"""Every storefront page from a 360 px phone to a 1280 px desktop, and the admin pages a store admin and a
marketer use at 1280 px, in a real browser: nothing may be wider than the window (no horizontal scrolling).

Long titles, URLs and failure reasons are on purpose: they are what made pages overflow.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.campaigns.helpers import embed_as, unit
from tests.factories import add_image, create_product, jpeg_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE, DESKTOP = 360, 1280
LONG_TITLE = "Extraordinarily comfortable hand-stitched merino wool cardigan with mother-of-pearl buttons"
LONG_URL = "https://images.example-cdn.com/catalog/" + "very-long-folder-name/" * 8 + "photo.jpg"


@pytest.fixture
def shop_data(store):
    from recommendations.models import EmbeddingSpace, ProductEmbedding
    from shop.models import Category, ProductImage

    space = EmbeddingSpace.objects.create(encoder="test", weights_id="t", dimensions=4, state="active")
    knitwear = Category.from_path(["Women", "Knitwear and extraordinarily cosy cardigans"])
    lamps = Category.from_path(["Home", "Lamps"])
    rng = np.random.default_rng(1)
    products = []
    for i in range(16):
        product = create_product(
            store=store,
            title=f"{LONG_TITLE} {i}" if i % 3 == 0 else f"Lamp {i}",
            category=knitwear if i % 3 == 0 else lamps,
            price="1249.99",
            image=jpeg_bytes((20 * i % 255, 90, 160)),
        )
        vector = unit(*(np.eye(4)[i % 2] + 0.1 * rng.normal(size=4)))
        ProductEmbedding.objects.create(space=space, product=product, vector=vector)
        products.append(product)
    gallery = products[0]
    for position in (1, 2):
        add_image(gallery, jpeg_bytes((40 * position, 200, 90), 96), position=position)
    ProductImage.objects.filter(product=gallery).update(source_url=LONG_URL)
    ProductImage.objects.create(
        product=gallery,
        position=3,
        source_url=LONG_URL,
        status=ProductImage.Status.FAILED,
        failure_reason="HTTP 404 from " + LONG_URL,
        sha256="f" * 64,
    )
    return {"space": space, "products": products, "gallery": gallery, "category": knitwear}


@pytest.fixture
def campaign(shop_data):
    from campaigns.models import Campaign, CampaignEvent, Creative
    from campaigns.services import save_creative

    campaign = Campaign.objects.create(
        name="Autumn knitwear with a very long campaign name for the report",
        slug="autumn",
        status=Campaign.Status.LIVE,
        control_share_pct=50,
        control_kind="products",
        intro="Warm and soft.",
    )
    creative = Creative(campaign=campaign, name="Cardigan ad with a long creative name", slug="ad")
    save_creative(creative=creative, image_data=jpeg_bytes((20, 120, 200), 300))
    embed_as(creative, unit(1, 0, 0, 0), shop_data["space"])
    product = shop_data["products"][0]
    for session, variant in (("s1", "visual"), ("s2", "control")):
        for kind in ("impression", "click"):
            CampaignEvent.objects.create(
                campaign=campaign,
                creative=creative,
                variant=variant,
                kind=kind,
                session_key=session,
                product=product,
            )
    return campaign


# Boxes that scroll sideways inside the page (the admin's changelist table does): cut columns hide there.
SCROLLING_BOXES = """[...document.querySelectorAll('*')].filter(e => {
    const x = getComputedStyle(e).overflowX;
    return (x === 'auto' || x === 'scroll') && e.scrollWidth > e.clientWidth + 1;
}).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + '.' + [...e.classList].join('.')
             + ' ' + e.scrollWidth + '>' + e.clientWidth)"""


def layout_problems(page, url: str) -> list[str]:
    response = page.goto(url)
    assert response is not None and response.status == 200, url
    scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    problems = [f"{url} scrolls sideways inside: {box}" for box in page.evaluate(SCROLLING_BOXES)]
    if scroll_width > inner_width:
        problems.append(f"{url} is {scroll_width} px wide in a {inner_width} px window")
    return problems


def assert_all_fit(page, urls: list[str]) -> None:
    problems = [problem for url in urls for problem in layout_problems(page, url)]
    assert not problems, "\n".join(problems)


def storefront_urls(live_server, shop_data, campaign) -> list[str]:
    base = live_server.url
    return [
        f"{base}/",
        f"{base}{shop_data['category'].get_absolute_url()}",
        f"{base}{shop_data['gallery'].get_absolute_url()}",
        f"{base}/search/by-photo/",
        f"{base}/for-you/",
        f"{base}/for-you/game/",
        f"{base}{campaign.get_absolute_url()}",
    ]


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_storefront_pages_fit_the_window(browser, live_server, shop_data, campaign, width):
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    try:
        assert_all_fit(page, storefront_urls(live_server, shop_data, campaign))
    finally:
        context.close()


def test_product_gallery_switches_photos(page, live_server, shop_data):
    page.set_viewport_size({"width": PHONE, "height": 800})
    page.goto(f"{live_server.url}{shop_data['gallery'].get_absolute_url()}")
    main = page.locator("#gallery-main")
    thumbs = page.locator(".gallery-thumbs a[data-full]")
    assert thumbs.count() == 3  # the failed download has no file: no thumbnail
    assert main.get_attribute("src") == thumbs.nth(0).get_attribute("data-full")
    thumbs.nth(2).click()
    assert main.get_attribute("src") == thumbs.nth(2).get_attribute("data-full")
    assert thumbs.nth(2).get_attribute("aria-current") == "true"
    assert thumbs.nth(0).get_attribute("aria-current") is None
    # One main photo, not every photo stacked full size.
    assert page.locator(".gallery img:not(.gallery-thumbs img)").count() == 1
    # Breadcrumbs by name, not the stored path.
    crumbs = page.locator("nav.breadcrumbs li").all_inner_texts()
    assert crumbs == ["All products", "Women", "Knitwear and extraordinarily cosy cardigans"]


def test_phone_menu_is_collapsed_and_desktop_sidebar_open(page, live_server, shop_data):
    page.set_viewport_size({"width": PHONE, "height": 800})
    page.goto(f"{live_server.url}/")
    assert page.evaluate("document.getElementById('category-menu').open") is False
    page.set_viewport_size({"width": DESKTOP, "height": 800})
    page.goto(f"{live_server.url}/")
    assert page.evaluate("document.getElementById('category-menu').open") is True


def login(browser, live_server, user, width: int):
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": live_server.url,
            }
        ]
    )
    return context


def test_strategy_controls_only_for_staff(browser, live_server, shop_data, django_user_model):
    shopper = browser.new_context()
    try:
        page = shopper.new_page()
        page.goto(f"{live_server.url}/for-you/")
        assert page.locator("article.personal-product").count() == 10
        assert page.locator(".strategies").count() == 0 and page.locator(".role").count() == 0
        assert page.locator("button.like svg.icon-like").count() == 10
    finally:
        shopper.close()
    staff = django_user_model.objects.create_user("merch", password="x", is_staff=True)
    context = login(browser, live_server, staff, DESKTOP)
    try:
        page = context.new_page()
        page.goto(f"{live_server.url}/for-you/")
        page.locator(".strategies a", has_text="best_score").click()
        page.wait_for_url("**/for-you/?strategy=best_score")
        assert page.locator("section.for-you").get_attribute("data-strategy") == "best_score"
        assert page.locator(".role").count() == page.locator("article.personal-product").count() > 0
    finally:
        context.close()


def test_admin_pages_fit_1280(browser, live_server, shop_data, campaign, admin_user):
    base = live_server.url
    product = shop_data["gallery"]
    urls = [
        f"{base}/admin/shop/product/",
        f"{base}/admin/shop/product/{product.pk}/change/",
        f"{base}/admin/shop/productimage/",
        f"{base}/admin/recommendations/embeddingspace/",
        f"{base}/admin/recommendations/imageembedding/",
        f"{base}/admin/campaigns/campaign/",
        f"{base}/admin/campaigns/campaign/{campaign.pk}/change/",
        f"{base}/admin/campaigns/campaign/{campaign.pk}/report/",
        f"{base}/admin/",
    ]
    context = login(browser, live_server, admin_user, DESKTOP)
    try:
        page = context.new_page()
        assert_all_fit(page, urls)
    finally:
        context.close()


def test_api_docs_work_offline(page, live_server):
    outside: list[tuple[str, str]] = []

    def only_local(route) -> None:
        if route.request.url.startswith(live_server.url):
            route.continue_()
        else:
            outside.append((route.request.resource_type, route.request.url))
            route.abort()

    page.route("**/*", only_local)
    page.goto(f"{live_server.url}/api/docs/")
    # ReDoc renders the schema: the title and an operation of it.
    page.locator("h1", has_text="Lookalike API").wait_for(timeout=20_000)
    assert page.get_by_text("Products that look like this one").count() >= 1
    # Scripts, styles and fonts are all local, and the page's CSP stops ReDoc's own logo request before it
    # is sent: nothing leaves the machine.
    assert outside == []


def test_embedding_progress_bar_follows_the_workers(browser, live_server, shop_data, admin_user):
    from recommendations import services
    from recommendations.models import ImageEmbedding

    space = shop_data["space"]
    images = list(services.embeddable_images().select_related("product"))
    context = login(browser, live_server, admin_user, DESKTOP)
    try:
        page = context.new_page()
        page.goto(f"{live_server.url}/admin/recommendations/embeddingspace/")
        bar = page.locator(f'.embedding-progress[data-space="{space.pk}"]')
        assert bar.get_attribute("data-finished") == "0"
        assert bar.locator('[data-field="total"]').inner_text() == str(len(images))
        # A worker embeds half of the images: the counts move without a reload.
        for image in images[: len(images) // 2]:
            ImageEmbedding.objects.create(
                space=space, image=image, product=image.product, sha256=image.sha256, vector=unit(1, 0, 0, 0)
            )
        page.wait_for_function(
            f"document.querySelector('.embedding-progress[data-space=\"{space.pk}\"] progress').value"
            f" === {len(images) // 2}"
        )
        for image in images[len(images) // 2 :]:
            ImageEmbedding.objects.create(
                space=space,
                image=image,
                product=image.product,
                sha256=image.sha256,
                status="failed",
                failure_reason="bad",
            )
        # Everything done: the page reloads itself and the bar is full.
        page.wait_for_selector(f'.embedding-progress[data-space="{space.pk}"][data-finished="1"]')
        assert bar.locator('[data-field="failed"]').inner_text() == str(len(images) - len(images) // 2)
    finally:
        context.close()
