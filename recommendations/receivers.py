"""Signal receivers: they only queue work, or mark cached answers stale, after the transaction commits.

Connected to whatever image model the catalog uses (``lookalike.catalog``), so the catalog app never
imports this one. An image is queued for embedding when it is created with a file, or when its file, its
digest, its position (which image is a product's primary one) or its product changes. Loaded fixtures (raw
saves) and ``QuerySet.update()`` send nothing: ``manage.py embed_catalog`` catches up with those.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_save, pre_save

from lookalike import catalog, versioned_cache
from recommendations import cache, services
from recommendations.models import EmbeddingSpace

_BEFORE_SAVE = "_recommendations_embedding_source"
_UNKNOWN = object()


def _watched_fields(model: Any) -> list[Any]:
    """The fields whose change can change an image's vector or its product's vector."""
    names = [catalog.image_field(role) for role in ("image", "sha256", "position", "product")]
    return [model._meta.get_field(name) for name in names if catalog.has_field(model, name)]


def _current(instance: Any, fields: list[Any]) -> tuple[Any, ...]:
    values = []
    for field in fields:
        value = getattr(instance, field.attname)
        values.append(getattr(value, "name", value) or "")  # a FieldFile compares by its stored name
    return tuple(values)


def remember_source(sender: Any, instance: Any, raw: bool = False, **kwargs: Any) -> None:
    """Before an existing image is saved, keep what the database holds, to tell a change afterwards."""
    if raw or instance._state.adding or instance.pk is None:
        return
    fields = _watched_fields(sender)
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and not {field.name for field in fields} & set(update_fields):
        return
    stored = sender._default_manager.filter(pk=instance.pk).values_list(*[f.attname for f in fields]).first()
    setattr(instance, _BEFORE_SAVE, tuple(value or "" for value in stored) if stored is not None else None)


def queue_embedding(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    if raw or not getattr(instance, catalog.image_field("image") or "image", None):
        return  # fixtures, or an image whose file is not downloaded yet
    if not created:
        before = instance.__dict__.pop(_BEFORE_SAVE, _UNKNOWN)
        if before is _UNKNOWN or before == _current(instance, _watched_fields(sender)):
            return
    services.queue_image_embedding([instance.pk])


def catalog_changed(sender: Any, raw: bool = False, **kwargs: Any) -> None:
    """A product (title, price, stock), an image or the active space changed: cached similar items are
    stale (one Redis INCR after the commit, however many rows it wrote)."""
    if not raw:
        versioned_cache.bump_after_commit(cache.CATALOG_VERSION_KEY)


_model = catalog.image_model()
pre_save.connect(remember_source, sender=_model, dispatch_uid="recommendations.remember_source")
post_save.connect(queue_embedding, sender=_model, dispatch_uid="recommendations.queue_embedding")
for _sender in (catalog.product_model(), _model, EmbeddingSpace):
    uid = f"recommendations.stale.{_sender._meta.label}"
    post_save.connect(catalog_changed, sender=_sender, dispatch_uid=uid)
