"""``--store`` of the management commands: a store's id or its name, as ``import_catalog --store`` takes."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from lookalike.catalog import has_field, product_role, store_field, store_model


def find_store(value: str | int) -> Any:
    """The store named ``value`` (or with that id); CommandError naming the stores there are otherwise."""
    if product_role("store") is None:
        raise CommandError("The catalog has no store (LOOKALIKE['PRODUCT_FIELDS']['store']).")
    stores = store_model()._default_manager.all()
    value = str(value).strip()  # call_command() may pass the id as an int
    if value.isdigit() and (found := stores.filter(pk=int(value)).first()) is not None:
        return found
    name_field = store_field("name")
    if name_field is None or not has_field(store_model(), name_field):
        raise CommandError(f"No store with id {value}.")
    matches = list(stores.filter(**{name_field: value}).order_by("pk")[:2])
    if len(matches) == 1:
        return matches[0]
    first = stores.order_by("pk")[:20]
    known = ", ".join(f"{getattr(store, name_field)!r} (id {store.pk})" for store in first)
    if matches:
        raise CommandError(f"Several stores are named {value!r}: give the id. Stores: {known}")
    raise CommandError(f"No store named {value!r}. Stores: {known or 'none yet'}")
