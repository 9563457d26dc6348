"""Writes: shopper interactions, the products a session has been shown, and the expiry of anonymous profiles.

Anonymous shoppers are identified by a random key kept in their Django session (no login, no personal data).
Their interactions and shown-product rows are forgotten after ``RECOMMENDATIONS["PROFILE_MAX_AGE_S"]``: read
time ignores older rows (so expiry holds even before the clean-up runs) and ``expire_profiles()`` deletes them
(``manage.py expire_profiles`` or the beat-able task ``recommendations.expire_profiles``).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.http import HttpRequest
from django.utils import timezone

from recommendations.conf import app_setting
from recommendations.models import Interaction, ShownProduct

# Where a shopper's key lives in the Django session. It is a random token rather than the session key itself
# because Django changes the session key at login, and the anonymous history should follow the shopper.
SESSION_SHOPPER_KEY = "recommendations_shopper"


@dataclass(frozen=True)
class Shopper:
    """Who a profile belongs to: the session's shopper key, plus the user when logged in."""

    session_key: str
    user_id: int | None = None


def shopper_for_request(request: HttpRequest, *, create: bool = True) -> Shopper | None:
    """The request's shopper; with ``create`` an anonymous visitor gets a shopper key (and a session cookie).

    Without ``create`` a visitor who never had one gets None (read-only pages do not start sessions).
    """
    key = request.session.get(SESSION_SHOPPER_KEY)
    if not key:
        if not create:
            return None
        key = secrets.token_hex(16)
        request.session[SESSION_SHOPPER_KEY] = key  # modified: SessionMiddleware saves it and sets the cookie
    user = getattr(request, "user", None)
    user_id = user.pk if user is not None and user.is_authenticated else None
    return Shopper(session_key=str(key), user_id=user_id)


def record_interaction(
    *, shopper: Shopper, product: Any, kind: str, source: str = "", dedup_window_s: float | None = None
) -> Interaction | None:
    """Store what the shopper did with a product.

    ``dedup_window_s``: when the same shopper did the same thing with the same product within this many
    seconds, nothing new is stored and None is returned (reloading a product page is one view, not ten).
    """
    if kind not in Interaction.Kind.values:
        raise ValueError(f"unknown interaction kind {kind!r}: one of {sorted(Interaction.Kind.values)}")
    product_id = getattr(product, "pk", product)
    if dedup_window_s:
        recent = Interaction.objects.for_shopper(
            session_key=shopper.session_key, user_id=shopper.user_id
        ).filter(
            product_id=product_id,
            kind=kind,
            created_at__gte=timezone.now() - timedelta(seconds=dedup_window_s),
        )
        if recent.exists():
            return None
    return Interaction.objects.create(
        session_key=shopper.session_key,
        user_id=shopper.user_id,
        product_id=product_id,
        kind=kind,
        source=source[:64],
    )


def record_shown(*, session_key: str, page: str, product_ids: Iterable[int], round: int = 0) -> None:
    """Remember that these products were shown to the session on ``page`` so that they are not shown again."""
    ShownProduct.objects.bulk_create(
        [ShownProduct(session_key=session_key, page=page, product_id=pk, round=round) for pk in product_ids],
        ignore_conflicts=True,  # a product already shown on this page keeps its first round
    )


def next_round_number(*, session_key: str, page: str) -> int:
    latest = ShownProduct.objects.filter(session_key=session_key, page=page).aggregate(latest=Max("round"))[
        "latest"
    ]
    return 1 if latest is None else latest + 1


def forget_shown(*, session_key: str, page: str) -> int:
    """Start the page afresh for this session (e.g. a new preference game); returns the rows deleted."""
    deleted, _ = ShownProduct.objects.filter(session_key=session_key, page=page).delete()
    return deleted


@dataclass(frozen=True)
class ExpiryReport:
    interactions_deleted: int
    shown_deleted: int


def expire_profiles(*, max_age_s: float | None = None) -> ExpiryReport:
    """Delete anonymous interactions and shown-product rows older than ``PROFILE_MAX_AGE_S``.

    Interactions of logged-in users are kept: they are the user's purchase and browsing history. Their
    shown-product rows (keyed by the session, which is short-lived) expire like everyone else's.
    """
    max_age_s = app_setting("PROFILE_MAX_AGE_S") if max_age_s is None else max_age_s
    cutoff = timezone.now() - timedelta(seconds=max_age_s)
    with transaction.atomic():
        interactions, _ = Interaction.objects.filter(user__isnull=True, created_at__lt=cutoff).delete()
        shown, _ = ShownProduct.objects.filter(shown_at__lt=cutoff).delete()
    return ExpiryReport(interactions_deleted=interactions, shown_deleted=shown)
