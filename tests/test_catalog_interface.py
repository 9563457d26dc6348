"""``LOOKALIKE`` and ``lookalike.catalog``: one description of the catalog, checked at start-up, whose roles
may be expressions that filter in SQL."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db.models import BooleanField, ExpressionWrapper, F, Q

from lookalike import catalog
from lookalike.checks import check_catalog
from recommendations.selectors import ProductFilter


def errors(ids_only: bool = False) -> list:
    found = check_catalog(None)
    return [error.id for error in found] if ids_only else found


def test_the_bundled_catalog_passes_the_checks(settings) -> None:
    settings.LOOKALIKE = {}
    assert errors() == []


def test_a_missing_field_is_named_with_the_setting_to_fix(settings) -> None:
    settings.LOOKALIKE = {"PRODUCT_FIELDS": {"price": "prize"}, "IMAGE_FIELDS": {"position": "order__rank"}}
    messages = sorted(error.msg for error in errors())
    assert messages == [
        "LOOKALIKE['IMAGE_FIELDS']['position'] = 'order__rank': shop.ProductImage has no field 'order'.",
        "LOOKALIKE['PRODUCT_FIELDS']['price'] = 'prize': shop.Product has no field 'prize'.",
    ]


def test_models_settings_and_required_roles_are_checked(settings) -> None:
    settings.LOOKALIKE = {"STORE_MODEL": "shop.Nothing", "IMAGE_FIELDS": {"image": None}, "COLOUR": 1}
    assert sorted(errors(ids_only=True)) == ["lookalike.E002", "lookalike.E003", "lookalike.E005"]


def test_settings_of_earlier_versions_name_their_replacement(settings) -> None:
    settings.LOOKALIKE = {}
    settings.RECOMMENDATIONS_PRODUCT_MODEL = "shop.Product"
    settings.SCRAPER = {**settings.SCRAPER, "STORE_MODEL": "shop.Store"}
    messages = sorted(error.msg for error in errors() if error.id == "lookalike.E001")
    assert messages == [
        "RECOMMENDATIONS_PRODUCT_MODEL was replaced by LOOKALIKE['PRODUCT_MODEL'].",
        "SCRAPER['STORE_MODEL'] was replaced by LOOKALIKE['STORE_MODEL'].",
    ]


def test_an_expression_that_does_not_resolve_is_reported(settings) -> None:
    settings.LOOKALIKE = {"PRODUCT_FIELDS": {"price": lambda: F("list_price") * 2}}
    [error] = errors()
    assert error.id == "lookalike.E008" and "LOOKALIKE['PRODUCT_FIELDS']['price']" in error.msg


@pytest.mark.django_db
def test_expression_roles_filter_in_sql_and_read_without_a_query_per_product(
    settings, django_assert_num_queries
) -> None:
    # Price with tax and "in stock" derived from two columns: neither is a column of its own.
    settings.LOOKALIKE = {
        "PRODUCT_FIELDS": {
            "price": F("price") * Decimal("1.2"),
            "in_stock": lambda: ExpressionWrapper(
                Q(in_stock=True) & Q(price__isnull=False), output_field=BooleanField()
            ),
        }
    }
    from shop.models import Product, Store

    store = Store.objects.create(name="Store")

    def create_product(title: str, price: Decimal | None, in_stock: bool = True) -> Product:
        return Product.objects.create(
            store=store, external_id=title, title=title, price=price, in_stock=in_stock
        )

    cheap = create_product("Cheap", Decimal("10.00"))
    dear = create_product("Dear", Decimal("30.00"))
    create_product("Unpriced", None)
    sold_out = create_product("Sold out", Decimal("5.00"), in_stock=False)

    matching = catalog.products().filter(ProductFilter(in_stock_only=True, max_price=Decimal(13)).product_q())
    assert list(matching) == [cheap]
    in_stock = catalog.products().filter(ProductFilter(in_stock_only=True).product_q())
    assert set(in_stock) == {cheap, dear}
    # Through a relation (the embeddings' "product__"), expression roles go through pk__in.
    q = ProductFilter(in_stock_only=True, min_price=Decimal(20)).product_q(prefix="product__")
    assert "pk__in" in str(q)

    with django_assert_num_queries(1):
        loaded = catalog.products(read=["price", "in_stock"]).in_bulk([cheap.pk, sold_out.pk])
        assert catalog.role_value(loaded[cheap.pk], "price") == Decimal("12.000")
        assert catalog.role_value(loaded[sold_out.pk], "in_stock") is False
