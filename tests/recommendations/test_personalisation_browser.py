"""A shopper plays the preference game in a real browser (Playwright + Debian's Chromium).

The catalog is 60 real JPEG photos in two very different colour families (reds and blues, several shades
and sizes), embedded by the real encoder; picking red items must make each next round's exploit half red.
"""

from __future__ import annotations

import pytest

from tests.factories import add_image, create_product, jpeg_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REDS = [(200 + 5 * i, 20 + 4 * i, 25 + 3 * i) for i in range(10)]
BLUES = [(20 + 3 * i, 40 + 5 * i, 190 + 6 * i) for i in range(10)]


@pytest.fixture
def colour_catalog(store):
    from recommendations import services
    from shop.models import Category

    colour_of = {}
    image_ids = []
    for family, shades in (("Red", REDS), ("Blue", BLUES)):
        category = Category.from_path(["Colours", family])
        for i in range(30):
            product = create_product(
                store=store, title=f"{family} item {i:02d}", category=category, image=None
            )
            image_ids.append(add_image(product, jpeg_bytes(shades[i % 10], 72 + 8 * (i // 10))).pk)
            colour_of[product.pk] = family
    space = services.prepare_space("efficientnet_lite0", "DEFAULT")
    report = services.embed_images(image_ids, space=space)
    assert not report.failed
    return colour_of


def round_products(page) -> list[int]:
    return [
        int(pk)
        for pk in page.locator("form.game-choice").evaluate_all("els => els.map(e => e.dataset.productId)")
    ]


def test_three_rounds_of_picks_shape_the_next_round(page, live_server, colour_catalog):
    page.goto(f"{live_server.url}/for-you/game/")
    assert page.locator("section.preference-game").get_attribute("data-round") == "1"
    shown: list[int] = []
    for round_number in (1, 2, 3):
        products = round_products(page)
        assert len(products) == 10 and not set(products) & set(shown), "a product was shown twice"
        shown.extend(products)
        if round_number > 1:
            # The first half of every round after a pick is the exploit half: products like the picks.
            assert [colour_catalog[pk] for pk in products[:5]] == ["Red"] * 5
        else:
            # A cold start shows both colour families.
            assert {colour_catalog[pk] for pk in products} == {"Red", "Blue"}
        red = next(pk for pk in products if colour_catalog[pk] == "Red")
        page.locator(f'form.game-choice[data-product-id="{red}"] button').click()
        page.wait_for_selector(f'section.preference-game[data-round="{round_number + 1}"]')
        assert page.locator(f'ol.picks li[data-product-id="{red}"]').count() == 1

    final = round_products(page)
    assert [colour_catalog[pk] for pk in final[:5]] == ["Red"] * 5
    assert not set(final) & set(shown)
    # The picks are likes of this shopper: /for-you/ now leads with reds too.
    page.goto(f"{live_server.url}/for-you/")
    exploit = page.locator('article.personal-product[data-role="exploit"]').evaluate_all(
        "els => els.map(e => e.dataset.productId)"
    )
    assert len(exploit) == 5 and {colour_catalog[int(pk)] for pk in exploit} == {"Red"}
