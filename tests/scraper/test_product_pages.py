"""Product pages read with extruct: JSON-LD in CDATA, microdata, breadcrumbs of SEO plugins and themes,
and pages built to break the reader (nesting deeper than Python's recursion limit)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from scraper.parsers import RowError, ScrapedProduct, parse_product_page

FIXTURES = Path(__file__).parent / "fixtures"


def page(name: str, url: str) -> ScrapedProduct:
    product = parse_product_page((FIXTURES / name).read_bytes(), url)
    assert isinstance(product, ScrapedProduct), product
    return product


def test_json_ld_wrapped_in_cdata_comments_is_read() -> None:
    product = page("product_cdata_jsonld.html", "https://northpeak.example/merino-beanie/NP-77120.html")

    assert (product.external_id, product.title, product.brand) == ("NP-77120", "Merino Beanie", "Northpeak")
    assert (product.price, product.currency, product.in_stock) == (Decimal("29.95"), "USD", True)
    assert product.image_urls[0] == (
        "https://northpeak.example/on/demandware.static/-/Sites-np-master/default/dw1/images/large/NP-77120_1.jpg"
    )
    assert product.attributes["structured_data"] == "json-ld"


def test_microdata_gives_a_clean_name_brand_availability_and_breadcrumb() -> None:
    product = page("product_microdata.html", "https://www.tchibo.example/feinstrick-pullover-p400123456.html")

    assert product.title == "Feinstrick-Pullover"  # not OpenGraph's "… online bestellen | Tchibo"
    assert (product.external_id, product.brand) == ("400123456", "TCM")
    assert (product.price, product.currency, product.in_stock) == (Decimal("24.99"), "EUR", False)
    assert product.category_path == ["Damen", "Pullover"]  # "Startseite" is the home crumb
    assert product.image_urls == ["https://www.tchibo.example/newmedia/art_img/MAIN/pullover.jpg"]
    assert product.attributes["structured_data"] == "microdata"


def test_the_category_is_the_breadcrumb_that_belongs_to_the_product() -> None:
    product = page(
        "product_woocommerce_yoast.html", "https://ciclossierra.example/producto/bicicleta-montana-ruta-29/"
    )

    # Yoast's "Portada > Shop > <the product>" says nothing; WooCommerce's breadcrumb has the category.
    assert product.category_path == ["Bicycles"]
    assert (product.title, product.external_id) == ("Bicicleta de montaña Ruta 29", "RUTA29")
    assert (product.price, product.currency, product.in_stock) == (Decimal("749.00"), "EUR", True)


def test_json_ld_nested_100000_deep_is_one_row_error_or_ignored() -> None:
    depth = 100_000
    bomb = "[" * depth + "]" * depth
    html = (
        '<html><head><script type="application/ld+json">' + bomb + "</script>"
        '<meta property="og:type" content="product"><meta property="og:title" content="Still a product">'
        "</head><body></body></html>"
    ).encode()

    product = parse_product_page(html, "https://deep.example/p")

    assert isinstance(product, ScrapedProduct) and product.title == "Still a product"
    assert "nested too deeply" in product.attributes["json_ld_problem"]
    only_bomb = parse_product_page(
        ('<html><head><script type="application/ld+json">' + bomb + "</script></head></html>").encode(),
        "https://deep.example/q",
    )
    assert isinstance(only_bomb, RowError) and "nested too deeply" in only_bomb.reason


def test_microdata_nested_deeper_than_the_recursion_limit_costs_the_page_not_the_crawl() -> None:
    depth = 5_000
    nested = '<div itemscope itemtype="https://schema.org/Thing" itemprop="about">' * depth + "</div>" * depth
    html = f"<html><body>{nested}</body></html>".encode()

    result = parse_product_page(html, "https://deep.example/m")

    assert isinstance(result, RowError)  # not an exception
