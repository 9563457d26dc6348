"""The one interface through which ``recommendations``, ``scraper`` and ``campaigns`` reach a shop's catalog.

In the manner of Wagtail's ``get_image_model()``: the models and the roles of their fields come from the
``LOOKALIKE`` setting (``lookalike.conf``) and are resolved here, nowhere else. Nothing in the three apps
imports the bundled ``shop``. System checks (``lookalike.checks``) name the missing field and the setting
to fix at start-up.

A product role is a field (``"price"``), a related path (``"categories"``, ``"stockrecords__partner"``) or a
query expression. Querysets from ``products()`` carry every expression role under ``role_lookup(role)``,
so a price from stock records or "in stock if any stock record has stock" is a filter in SQL, not a loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.apps import apps
from django.db import models
from django.db.models.expressions import BaseExpression, Combinable

from lookalike.conf import lookalike_setting, model_label

ALIAS_PREFIX = "lookalike_"


def _model(key: str) -> type[models.Model]:
    return apps.get_model(model_label(key), require_ready=False)


def product_model() -> type[models.Model]:
    return _model("PRODUCT_MODEL")


def image_model() -> type[models.Model]:
    return _model("IMAGE_MODEL")


def store_model() -> type[models.Model]:
    return _model("STORE_MODEL")


def category_model() -> type[models.Model]:
    return _model("CATEGORY_MODEL")


# --- roles ------------------------------------------------------------------------------------------------


def is_expression(value: Any) -> bool:
    return isinstance(value, BaseExpression | Combinable) or hasattr(value, "resolve_expression")


def product_role(role: str) -> Any:
    """What ``LOOKALIKE['PRODUCT_FIELDS'][role]`` declares: a path, an expression or None."""
    value = lookalike_setting("PRODUCT_FIELDS").get(role)
    if callable(value) and not is_expression(value):
        value = value()
    return value


def image_field(role: str) -> str | None:
    """The image model's field for a role (product, image, position, sha256, status, ...), or None."""
    return lookalike_setting("IMAGE_FIELDS").get(role)


def store_field(role: str) -> str | None:
    return lookalike_setting("STORE_FIELDS").get(role)


def category_field(role: str) -> str | None:
    return lookalike_setting("CATEGORY_FIELDS").get(role)


def role_lookup(role: str) -> str | None:
    """The name to filter, order or read a product role by on a ``products()`` queryset (None: absent)."""
    value = product_role(role)
    if value is None:
        return None
    return f"{ALIAS_PREFIX}{role}" if is_expression(value) else str(value)


def product_field(role: str) -> str | None:
    """The product model's own field for a role, when the role is one (the writers need real columns)."""
    value = product_role(role)
    if not isinstance(value, str) or "__" in value:
        return None
    return value if has_field(product_model(), value) else None


def _is_multi_valued(path: str) -> bool:
    model: Any = product_model()
    for part in path.split("__"):
        try:
            field = model._meta.get_field(part)
        except Exception:
            return False
        if field.many_to_many or field.one_to_many:
            return True
        if not field.is_relation:
            return False
        model = field.related_model
    return False


def filters_need_subquery() -> bool:
    """True when a role is an expression or crosses a many-valued relation: a filter on the product from
    another model then goes through ``pk__in`` (expressions cannot be reached through a relation)."""
    for role in lookalike_setting("PRODUCT_FIELDS"):
        value = product_role(role)
        if (
            is_expression(value)
            or (isinstance(value, str) and "__" in value)
            or (isinstance(value, str) and _is_multi_valued(value))
        ):
            return True
    return False


def products(*, read: Iterable[str] = ()) -> models.QuerySet:
    """The product model's default queryset with the expression roles attached.

    Roles in ``read`` are selected (``role_value()`` then reads them without a query); the others are only
    available to filters. A role on a many-valued path (a product's categories) reads as its smallest value.
    """
    qs = product_model()._default_manager.all()
    wanted = set(read)
    aliases: dict[str, Any] = {}
    annotations: dict[str, Any] = {}
    for role in lookalike_setting("PRODUCT_FIELDS"):
        value = product_role(role)
        if is_expression(value):
            (annotations if role in wanted else aliases)[f"{ALIAS_PREFIX}{role}"] = value
        elif isinstance(value, str) and role in wanted and ("__" in value or _is_multi_valued(value)):
            annotations[f"{ALIAS_PREFIX}{role}"] = models.Min(value)
    if aliases:
        qs = qs.alias(**aliases)
    if annotations:
        qs = qs.annotate(**annotations)
    return qs


def _read_name(role: str) -> str | None:
    """The column ``values_list()`` reads a role from on a ``products(read=[role])`` queryset."""
    value = product_role(role)
    if value is None:
        return None
    if isinstance(value, str) and "__" not in value and not _is_multi_valued(value):
        return value
    return f"{ALIAS_PREFIX}{role}"


def role_values(product_ids: Iterable[Any], role: str) -> dict[Any, Any]:
    """Product id → the role's value (a relation's primary key), in one query; {} when the role is absent."""
    name, ids = _read_name(role), list(product_ids)
    if name is None or not ids:
        return {}
    return dict(products(read=[role]).order_by().filter(pk__in=ids).values_list("pk", name))


def role_value(product: models.Model, role: str, default: Any = None) -> Any:
    """A product's value for a role: the field's value (a related object for a foreign key), or what
    ``products(read=[role])`` selected; a product loaded otherwise costs one query per such role."""
    value = product_role(role)
    if value is None:
        return default
    alias = f"{ALIAS_PREFIX}{role}"
    if alias in product.__dict__:
        found = product.__dict__[alias]
        return default if found is None else found
    if isinstance(value, str) and "__" not in value and not _is_multi_valued(value):
        found = getattr(product, value, default)
        return default if found is None else found
    found = products(read=[role]).filter(pk=product.pk).values_list(alias, flat=True).first()
    return default if found is None else found


def role_id(product: models.Model, role: str) -> Any:
    """The primary key a relation role points to (a foreign key's id, a product's first category)."""
    value = product_role(role)
    if isinstance(value, str) and "__" not in value and not _is_multi_valued(value):
        field = _get_field(product_model(), value)
        if field is not None and field.is_relation:
            return getattr(product, field.attname, None)
    found = role_value(product, role)
    return getattr(found, "pk", found)


def product_url(product: models.Model) -> str:
    """Where a widget links to: the ``url`` role when set, else ``get_absolute_url()``."""
    url = role_value(product, "url") if product_role("url") else None
    if url:
        return str(url)
    return product.get_absolute_url()  # type: ignore[attr-defined]


def listed_q(prefix: str = "") -> models.Q:
    """Products that are listed on their own: not a variant of another product (when ``parent`` is set)."""
    parent = product_field("parent")
    return models.Q(**{f"{prefix}{parent}__isnull": True}) if parent else models.Q()


# --- images -------------------------------------------------------------------------------------------------


def images() -> models.QuerySet:
    return image_model()._default_manager.all()


def image_product_attname() -> str:
    return str(_get_field(image_model(), image_field("product") or "product").attname)


def image_order() -> list[str]:
    position = image_field("position")
    return [position, "pk"] if position else ["pk"]


def primary_images(product_ids: Sequence[Any]) -> dict[Any, Any]:
    """Each product's first image file (lowest position), in one query for all of them."""
    ids = list(product_ids)
    if not ids:
        return {}
    product_fk = image_field("product") or "product"
    file_field = image_field("image") or "image"
    attname = image_product_attname()
    rows = (
        images()
        .filter(**{f"{product_fk}__in": ids})
        .exclude(**{file_field: ""})
        .order_by(product_fk, *image_order())
    )
    files: dict[Any, Any] = {}
    for image in rows:
        files.setdefault(getattr(image, attname), getattr(image, file_field))
    return files


def primary_image_subquery() -> models.Subquery:
    """The file name of a product's first image, for ``annotate()`` on a products queryset."""
    product_fk = image_field("product") or "product"
    file_field = image_field("image") or "image"
    first = (
        images()
        .filter(**{product_fk: models.OuterRef("pk")})
        .exclude(**{file_field: ""})
        .order_by(*image_order())
        .values(file_field)[:1]
    )
    return models.Subquery(first)


def image_storage() -> Any:
    return _get_field(image_model(), image_field("image") or "image").storage


# --- stores and categories ------------------------------------------------------------------------------


def store_value(store: models.Model | None, role: str, default: Any = None) -> Any:
    name = store_field(role)
    found = getattr(store, name, None) if (store is not None and name) else None
    return default if found is None else found


def category_subtree_ids(category_ids: Sequence[Any]) -> list[Any]:
    """The categories and, where the category model has a materialised path, every category below them."""
    if not category_ids:
        return []
    model = category_model()
    path = category_field("path")
    if not path or not has_field(model, path):
        return list(category_ids)
    paths = list(model._default_manager.filter(pk__in=category_ids).values_list(path, flat=True))
    if not paths:
        return list(category_ids)
    q = models.Q()
    for value in paths:
        q |= models.Q(**{f"{path}__startswith": value})
    return list(model._default_manager.filter(q).values_list("pk", flat=True))


# --- helpers ----------------------------------------------------------------------------------------------


def _get_field(model: type[models.Model], name: str) -> Any:
    try:
        return model._meta.get_field(name)
    except Exception:
        return None


def has_field(model: type[models.Model], name: str | None) -> bool:
    return bool(name) and _get_field(model, name or "") is not None
