"""Writes: creatives and their embeddings, cache versions, tracked events, bulk campaign creation."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from django.conf import settings
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.db import IntegrityError, connection, models, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.text import slugify

from campaigns import tracking
from campaigns.conf import app_setting
from campaigns.models import Campaign, CampaignEvent, Creative
from lookalike.catalog import product_model
from recommendations.ratelimit import increment
from scraper.parsers.image_folder import ImageRejected, inspect_image

logger = logging.getLogger(__name__)

CATALOG_VERSION_KEY = "campaigns:catalog-version"
# Part of every cached landing creative's entry (views.cached_landing_creative).
SETUP_VERSION_KEY = "campaigns:setup-version"


class UnknownProduct(LookupError):
    """An event names a product that is not in the catalog."""


class CreativeImageError(ValueError):
    """The creative's image cannot be used; ``reason`` is shown to the marketer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- Cache versions -----------------------------------------------------------------------------------


def catalog_version() -> int:
    """The stock version of the catalog, part of every landing-page cache key."""
    version = cache.get(CATALOG_VERSION_KEY)
    if version is None:
        # A fresh start value (not 1) so that an evicted counter never repeats an old key.
        cache.add(CATALOG_VERSION_KEY, time.time_ns(), timeout=None)
        version = cache.get(CATALOG_VERSION_KEY)
    return int(version or 0)


def bump_setup_version() -> None:
    """Forget every cached landing creative (a campaign, a creative or the active space changed)."""
    try:
        cache.incr(SETUP_VERSION_KEY)
    except ValueError:  # missing: evicted or never set
        cache.set(SETUP_VERSION_KEY, time.time_ns(), timeout=None)


def bump_catalog_version() -> None:
    """Invalidate every cached landing page (a product's stock changed, or a product was deleted)."""
    try:
        cache.incr(CATALOG_VERSION_KEY)
    except ValueError:  # missing: evicted or never set
        cache.set(CATALOG_VERSION_KEY, time.time_ns(), timeout=None)


def bump_campaign_version(campaign_id: int) -> None:
    """Invalidate the campaign's cached pages (its creatives or product lists changed)."""
    Campaign.objects.filter(pk=campaign_id).update(version=models.F("version") + 1, updated_at=timezone.now())


def archive_campaigns(campaign_ids: list[int]) -> int:
    """Archive campaigns: their pages redirect like ended ones, their events and reports stay. Returns how
    many were archived (already archived ones are left as they are)."""
    return (
        Campaign.objects.filter(pk__in=campaign_ids)
        .exclude(status=Campaign.Status.ARCHIVED)
        .update(status=Campaign.Status.ARCHIVED, version=models.F("version") + 1, updated_at=timezone.now())
    )


# --- Creative images ----------------------------------------------------------------------------------


# The formats a creative may have, with the extension it is stored under (docs/campaigns.md). The name of
# an uploaded file, a URL's path or a ZIP entry says nothing: the stored file's name and extension, and so
# the type it is served as, come from the decoded image alone, so "ad.html" holding a PNG is served as PNG.
CREATIVE_FORMATS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif"}


@dataclass(frozen=True)
class CreativeImage:
    width: int
    height: int
    content_type: str

    @property
    def extension(self) -> str:
        return CREATIVE_FORMATS[self.content_type]


def check_creative_image(data: bytes) -> CreativeImage:
    """Refuse what cannot be a creative (too large, not a JPEG, PNG, WebP or GIF, corrupt, too many pixels).

    Raises ``CreativeImageError``."""
    max_bytes = app_setting("CREATIVE_MAX_BYTES")
    if not data:
        raise CreativeImageError("The file is empty.")
    if len(data) > max_bytes:
        raise CreativeImageError(
            f"The file is {len(data) / 1e6:.1f} MB; creatives may be at most {max_bytes / 1e6:.0f} MB."
        )
    try:
        info = inspect_image(data, max_pixels=app_setting("CREATIVE_MAX_PIXELS"), decode=True)
    except ImageRejected as error:
        raise CreativeImageError(f"This is not a usable image: {str(error).rstrip('.')}.") from None
    if info.content_type not in CREATIVE_FORMATS:
        kind = info.content_type.removeprefix("image/").upper()
        raise CreativeImageError(f"{kind} images cannot be creatives: use JPEG, PNG, WebP or GIF.")
    return CreativeImage(width=info.width, height=info.height, content_type=info.content_type)


def fetch_creative_image(url: str) -> bytes:
    """Download an ad image through the scraper's guarded client (no private addresses, size caps)."""
    from scraper.http import FetchError, FetchPolicy, GuardedClient

    scraper_settings = getattr(settings, "SCRAPER", {}) or {}
    allow_hosts = set(app_setting("FETCH_ALLOW_HOSTS")) | set(scraper_settings.get("ALLOW_HOSTS", ()))
    timeout_s = float(app_setting("FETCH_TIMEOUT_S"))
    policy_options: dict[str, Any] = {
        "allow_hosts": frozenset(allow_hosts),
        "connect_timeout_s": min(5.0, timeout_s),
        "read_timeout_s": timeout_s,
        "total_timeout_s": 2 * timeout_s,
        "max_image_bytes": app_setting("CREATIVE_MAX_BYTES"),
        "max_image_pixels": app_setting("CREATIVE_MAX_PIXELS"),
        "max_retries": 1,
        # One image a person asked for, like a browser would: not a crawl.
        "respect_robots": False,
    }
    if scraper_settings.get("USER_AGENT"):
        policy_options["user_agent"] = scraper_settings["USER_AGENT"]
    try:
        with GuardedClient(FetchPolicy(**policy_options)) as client:
            return client.get(url, kind="image").content
    except FetchError as error:
        raise CreativeImageError(f"The image could not be fetched: {error.reason.rstrip('.')}.") from None


def save_creative(*, creative: Creative, image_data: bytes | None = None) -> Creative:
    """Save a creative and queue its embedding when its image is new or changed.

    ``image_data``: new image bytes. Without it, an uncommitted file on ``creative.image`` is read; with
    neither, an ``image_url`` is fetched when the creative has no image yet. The image is checked here
    whichever way it came, and stored as ``<sha256>.<extension of its decoded format>``. Raises
    ``CreativeImageError``.
    """
    # An upload assigned to the field but not stored yet (the admin form's file) is read here.
    uncommitted = bool(creative.image) and not getattr(creative.image, "_committed", True)
    if image_data is None and uncommitted:
        creative.image.seek(0)
        image_data = creative.image.read()
    if image_data is None and not creative.image and creative.image_url:
        image_data = fetch_creative_image(creative.image_url)
    if image_data is None and not creative.image:
        raise CreativeImageError("Upload an image or give its URL.")
    if image_data is not None:
        checked = check_creative_image(image_data)
        digest = hashlib.sha256(image_data).hexdigest()
        if digest != creative.sha256 or not creative.image or uncommitted:
            creative.sha256 = digest
            creative.embedding_status = Creative.EmbeddingStatus.PENDING
            creative.embedding_error = ""
            creative.vector = None
            creative.descriptor = None
            creative.space = None
            creative.embedded_at = None
            creative.image.save(f"{digest}.{checked.extension}", ContentFile(image_data), save=False)
    if not creative.slug:
        creative.slug = unique_creative_slug(creative)
    with transaction.atomic():
        creative.save()
        bump_campaign_version(creative.campaign_id)
    if creative.embedding_status == Creative.EmbeddingStatus.PENDING:
        queue_creative_embedding(creative.pk)
    return creative


def rename_creative_files() -> list[tuple[str, str]]:
    """Store again, as ``<sha256>.<extension of its decoded format>``, every creative file whose name says
    otherwise (files uploaded before names came from the content: ``<sha256>.html`` holding a PNG would be
    served as a page). Content that is no accepted image gets ``.bin``. Returns (old name, new name) pairs."""
    from scraper.parsers.image_folder import sniff_image_type

    renamed: list[tuple[str, str]] = []
    for creative in Creative.objects.exclude(image="").only("pk", "image", "sha256").iterator():
        old_name = creative.image.name
        with creative.image.open("rb") as stream:
            data = stream.read()
        extension = CREATIVE_FORMATS.get(sniff_image_type(data) or "", "bin")
        if old_name.endswith(f".{extension}"):
            continue
        digest = creative.sha256 or hashlib.sha256(data).hexdigest()
        creative.image.save(f"{digest}.{extension}", ContentFile(data), save=False)
        Creative.objects.filter(pk=creative.pk).update(image=creative.image.name)
        creative.image.storage.delete(old_name)
        renamed.append((old_name, creative.image.name))
    return renamed


def unique_creative_slug(creative: Creative) -> str:
    base = slugify(creative.name)[:90] or "creative"
    taken = set(Creative.objects.filter(campaign_id=creative.campaign_id).values_list("slug", flat=True))
    slug, n = base, 2
    while slug in taken or slug in ("events", "go"):
        slug, n = f"{base}-{n}", n + 1
    return slug


def queue_creative_embedding(creative_id: int) -> None:
    """Embed the creative on a worker once the current transaction has committed."""
    from campaigns.tasks import embed_creative_task

    transaction.on_commit(lambda: embed_creative_task.delay(creative_id))


def requeue_stale_creative(creative: Creative, *, space_id: int | None) -> bool:
    """Queue a creative whose vector is missing or from another space; at most once per interval."""
    if space_id is None or creative.embedding_status == Creative.EmbeddingStatus.FAILED:
        return False
    if not cache.add(
        f"campaigns:requeued:{creative.pk}:{space_id}", 1, timeout=app_setting("REQUEUE_INTERVAL_S")
    ):
        return False
    queue_creative_embedding(creative.pk)
    return True


def embed_creative(*, creative_id: int) -> str:
    """Compute the creative's vector with the active space's encoder; idempotent. Returns what happened."""
    from recommendations import matching
    from recommendations.imaging import BadImage
    from recommendations.services import NoActiveSpace, embed_query_image

    creative = Creative.objects.filter(pk=creative_id).first()
    if creative is None:
        return "missing"
    space_id = _active_space_id()
    if creative.is_ready_for(space_id):
        return "unchanged"
    if not creative.image:
        _mark(creative, status=Creative.EmbeddingStatus.FAILED, error="The creative has no image.")
        return "failed"
    with creative.image.open("rb") as stream:
        data = stream.read()
    try:
        space, vector = embed_query_image(data)
    except BadImage as error:
        _mark(creative, status=Creative.EmbeddingStatus.FAILED, error=f"Bad image: {error.reason}")
        return "failed"
    except NoActiveSpace:
        _mark(creative, status=Creative.EmbeddingStatus.PENDING, error="No embedding space is active yet.")
        return "pending"
    # Only if the image is still the one embedded (the marketer may have replaced it meanwhile).
    descriptor = None
    if matching.has_descriptors(space):
        try:
            descriptor = matching.describe_photo(data)
        except ValueError:  # the encoder read it; a descriptor is a nicety, never a failure
            descriptor = None
    updated = Creative.objects.filter(pk=creative.pk, sha256=creative.sha256).update(
        vector=vector,
        descriptor=descriptor,
        space=space,
        embedding_status=Creative.EmbeddingStatus.READY,
        embedding_error="",
        embedded_at=timezone.now(),
        updated_at=timezone.now(),
    )
    bump_setup_version()  # an update() sends no signal: cached landing creatives must see the vector
    return "embedded" if updated else "superseded"


def _mark(creative: Creative, *, status: str, error: str) -> None:
    Creative.objects.filter(pk=creative.pk, sha256=creative.sha256).update(
        embedding_status=status, embedding_error=error[:500], updated_at=timezone.now()
    )
    bump_setup_version()


def _active_space_id() -> int | None:
    from recommendations.models import EmbeddingSpace

    return EmbeddingSpace.objects.active().values_list("pk", flat=True).first()


# --- Events -------------------------------------------------------------------------------------------


def record_event(
    *,
    campaign_id: int,
    creative_id: int | None,
    variant: str,
    kind: str,
    session_key: str,
    product_id: int | None = None,
    utm: dict[str, str] | None = None,
    dedup_extra: str = "",
    cap: tuple[str, int] | None = None,
) -> bool:
    """Store one event unless the same one (session, creative, kind, product) was stored within
    ``DEDUP_WINDOW_S``; True when stored. The window starts at the first event (a Valkey SET NX).
    ``cap``: (counter key, most events): events past the count stay unstored (counted atomically for the
    attribution window).

    Raises ``UnknownProduct`` when ``product_id`` is not in the catalog.
    """
    key = tracking.dedup_key(
        session_key=session_key, creative_id=creative_id, kind=kind, product_id=product_id, extra=dedup_extra
    )
    if not cache.add(key, 1, timeout=app_setting("DEDUP_WINDOW_S")):
        return False
    if cap is not None:
        counter_key, most = cap
        count, _ = increment(cache.make_and_validate_key(counter_key), app_setting("ATTRIBUTION_MAX_AGE_S"))
        if count > most:
            return False
    values = {
        "campaign_id": campaign_id,
        "creative_id": creative_id,
        "variant": variant,
        "kind": kind,
        "session_key": session_key,
        "product_id": product_id,
        "utm": json.dumps(utm or {}),
        "created_at": timezone.now(),
    }
    try:
        stored = _insert_event(values)
    except Exception:
        cache.delete(key)  # not stored, so a retry must not be taken for a duplicate
        raise
    if not stored:
        cache.delete(key)
        raise UnknownProduct(f"no product {product_id}")
    return True


def _insert_event(values: dict[str, Any]) -> bool:
    """One INSERT; with a product, only if that product exists: one round trip instead of a look-up and an
    insert (the event endpoint's latency is mostly database round trips). False for an unknown product."""
    quote = connection.ops.quote_name
    columns = ", ".join(quote(name) for name in values)  # the attribute names are the column names
    placeholders = ", ".join("%s::jsonb" if name == "utm" else "%s" for name in values)
    sql = f"INSERT INTO {quote(CampaignEvent._meta.db_table)} ({columns}) SELECT {placeholders}"
    params = list(values.values())
    if values["product_id"] is not None:
        products = product_model()._meta
        pk_column = str(products.pk.column if products.pk is not None else "id")
        sql += f" WHERE EXISTS (SELECT 1 FROM {quote(products.db_table)} WHERE {quote(pk_column)} = %s)"
        params.append(values["product_id"])
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount == 1


def record_conversion(*, request: HttpRequest, kind: str, product: Any = None, order_id: str = "") -> bool:
    """Record an add-to-cart or purchase of a shopper who came from a campaign (for Django stores).

    Reads the attribution cookie set by the click redirect; does nothing (False) for shoppers who did
    not come from a campaign, for bots, and for repeats within the de-duplication window.
    """
    if kind not in (CampaignEvent.Kind.ADD_TO_CART, CampaignEvent.Kind.PURCHASE):
        raise ValueError(f"kind must be add_to_cart or purchase, not {kind!r}")
    token = request.COOKIES.get(app_setting("ATTRIBUTION_COOKIE"))
    if not token or tracking.is_bot(request.headers.get("User-Agent")):
        return False
    try:
        attribution = tracking.read_attribution_token(token)
    except Exception:
        return False
    product_id = getattr(product, "pk", product)
    try:
        return record_attributed_event(
            attribution=attribution, kind=kind, product_id=product_id, order_id=order_id
        )
    except UnknownProduct:
        return False


def record_attributed_event(
    *, attribution: tracking.Attribution, kind: str, product_id: int | None, order_id: str = ""
) -> bool:
    """Record a conversion credited to a click; False for a repeat, or past ``MAX_CONVERSIONS[kind]`` for the
    click (a token is a bearer credential: one leaked token must not count a hundred purchases)."""
    limit = (app_setting("MAX_CONVERSIONS") or {}).get(kind)
    try:
        return record_event(
            campaign_id=attribution.campaign_id,
            creative_id=attribution.creative_id,
            variant=attribution.variant,
            kind=kind,
            session_key=attribution.session_key,
            product_id=product_id,
            dedup_extra=str(order_id)[:100],
            cap=None if limit is None else (tracking.conversions_key(attribution, kind), int(limit)),
        )
    except IntegrityError:  # the campaign or creative was deleted since the click
        return False


# --- Bulk creation ------------------------------------------------------------------------------------


@dataclass
class BulkResult:
    created: list[Campaign] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file in the archive, reason)


def create_campaigns_from_zip(
    *, data: bytes | BinaryIO, defaults: dict[str, Any], user: Any = None
) -> BulkResult:
    """One draft campaign (with one creative) per image in a ZIP archive; each creative is embedded.

    ``defaults``: Campaign field values shared by all of them (store, price range, product_count, ...;
    ``categories`` as a list). Names come from the file names ("summer-polo.jpg" → "Summer polo").
    Raises ``scraper.parsers.records.FeedError`` when the archive as a whole is unusable.
    """
    from scraper.parsers.image_folder import parse_image_zip
    from scraper.parsers.records import RowError

    defaults = dict(defaults)
    categories = defaults.pop("categories", [])
    result = BulkResult()
    records = parse_image_zip(
        data,
        max_files=app_setting("BULK_MAX_FILES"),
        max_total_bytes=app_setting("BULK_MAX_TOTAL_BYTES"),
        max_file_bytes=app_setting("CREATIVE_MAX_BYTES"),
        max_pixels=app_setting("CREATIVE_MAX_PIXELS"),
    )
    for record in records:
        if isinstance(record, RowError):
            result.errors.append((record.source_ref, record.reason))
            continue
        image = record.image_files[0]
        try:
            check_creative_image(image.content)
        except CreativeImageError as error:
            result.errors.append((record.source_ref, error.reason))
            continue
        with transaction.atomic():
            campaign = Campaign(
                name=record.title[:200], slug=unique_campaign_slug(record.title), created_by=user, **defaults
            )
            campaign.save()
            if categories:
                campaign.categories.set(categories)
            creative = Creative(campaign=campaign, name=record.title[:200], slug="ad")
            save_creative(creative=creative, image_data=image.content)
        result.created.append(campaign)
    return result


def unique_campaign_slug(name: str) -> str:
    base = slugify(name)[:90] or "campaign"
    if base in ("events", "go"):
        base = f"{base}-campaign"
    taken = set(Campaign.objects.filter(slug__startswith=base).values_list("slug", flat=True))
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    return slug
