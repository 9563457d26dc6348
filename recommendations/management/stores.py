"""``--store`` of the management commands: a store's id or its name, as ``import_catalog --store`` takes."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.core.management.base import CommandError

from recommendations.catalog import product_field, product_model


def find_store(value: str | int) -> Any:
    """The store named ``value`` (or with that id); CommandError naming the stores there are otherwise."""
    field_name = product_field("store")
    if not field_name:
        raise CommandError("The catalog has no store field (RECOMMENDATIONS['CATALOG_FIELDS']['store']).")
    model: Any = product_model()._meta.get_field(field_name).related_model
    stores = model._default_manager.all()
    value = str(value).strip()  # call_command() may pass the id as an int
    if value.isdigit() and (found := stores.filter(pk=int(value)).first()) is not None:
        return found
    try:
        model._meta.get_field("name")
    except FieldDoesNotExist:
        raise CommandError(f"No store with id {value}.") from None
    matches = list(stores.filter(name=value).order_by("pk")[:2])
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(f"{store.name!r} (id {store.pk})" for store in stores.order_by("pk")[:20])
    if matches:
        raise CommandError(f"Several stores are named {value!r}: give the id. Stores: {known}")
    raise CommandError(f"No store named {value!r}. Stores: {known or 'none yet'}")
