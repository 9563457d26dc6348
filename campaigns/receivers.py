"""Signal receivers: a stock change invalidates cached landing pages; a saved campaign, creative or embedding
space invalidates cached landing creatives.

Connected to whatever product model the catalog uses (``lookalike.catalog``), so the
catalog app never imports this one. Cheap on purpose: the value of the stock field is remembered when a
product is loaded, and the global catalog version is bumped (after commit) only when it really changed.
Bulk ``QuerySet.update()`` sends no signals and deletions are not listened to (a ``post_delete`` receiver
would turn off Django's fast bulk delete); for both, the landing view re-checks that the products of a
cached page still exist and are in stock before serving it (at most once per STOCK_RECHECK_S).
A changed template or setting drops the landing layout rendered once per worker (CACHE_LAYOUT).
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_init, post_save
from django.test.signals import setting_changed
from django.utils.autoreload import file_changed

from campaigns.models import Campaign, Creative
from campaigns.services import CATALOG_VERSION_KEY, bump_setup_version
from lookalike import versioned_cache
from lookalike.catalog import product_field, product_model
from recommendations.models import EmbeddingSpace

_SNAPSHOT = "_campaigns_stock_snapshot"
_UNKNOWN = object()


def remember_stock(sender: Any, instance: Any, **kwargs: Any) -> None:
    field_name = product_field("in_stock")
    # Deferred fields are absent from __dict__; reading them here would cost a query per product.
    setattr(instance, _SNAPSHOT, instance.__dict__.get(field_name, _UNKNOWN) if field_name else _UNKNOWN)


def stock_changed(sender: Any, instance: Any, created: bool, raw: bool = False, **kwargs: Any) -> None:
    field_name = product_field("in_stock")
    if raw or created or not field_name:
        # A new product has no vector yet, so it is on no landing page until it is embedded.
        return
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and field_name not in update_fields:
        return
    before = getattr(instance, _SNAPSHOT, _UNKNOWN)
    now = instance.__dict__.get(field_name, _UNKNOWN)
    setattr(instance, _SNAPSHOT, now)
    if before is _UNKNOWN or before != now:
        versioned_cache.bump_after_commit(CATALOG_VERSION_KEY)


_model = product_model()
post_init.connect(remember_stock, sender=_model, dispatch_uid="campaigns.remember_stock")
post_save.connect(stock_changed, sender=_model, dispatch_uid="campaigns.stock_changed")


def setup_changed(sender: Any, raw: bool = False, **kwargs: Any) -> None:
    # At once, not after commit: the marketer's next request must see the change. A landing request
    # between this and the commit may cache the old row again, for CAMPAIGNS["CREATIVE_CACHE_S"] at most.
    if not raw:
        bump_setup_version()


for _sender in (Campaign, Creative, EmbeddingSpace):
    for _signal in (post_save, post_delete):
        _signal.connect(setup_changed, sender=_sender, dispatch_uid=f"campaigns.setup.{_sender._meta.label}")


def layout_changed(**kwargs: Any) -> None:
    from campaigns.views import _layout_shell

    _layout_shell.cache_clear()


# The development server reloads templates without a restart; tests change settings.
file_changed.connect(layout_changed, dispatch_uid="campaigns.layout_file_changed")
setting_changed.connect(layout_changed, dispatch_uid="campaigns.layout_setting_changed")
