"""Ad campaigns: creatives, the landing pages they lead to, and what shoppers did there.

A campaign holds one or more creatives (ad variants); each creative gets its own landing page of the
in-stock products that look most like it. Products, stores and categories are the
catalog's (``LOOKALIKE``, see docs/plugin.md).
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone
from pgvector.django import HalfVectorField

from campaigns.querysets import CampaignEventQuerySet, CampaignQuerySet
from lookalike.conf import model_label

PRODUCT_MODEL = model_label("PRODUCT_MODEL")
STORE_MODEL = model_label("STORE_MODEL")
CATEGORY_MODEL = model_label("CATEGORY_MODEL")

# Path segments used by the campaign URLs themselves (/c/events/, /c/<slug>/go/<id>/).
RESERVED_SLUGS = frozenset({"events", "go"})


def validate_not_reserved(value: str) -> None:
    if value.lower() in RESERVED_SLUGS:
        raise ValidationError(f"“{value}” is used by the campaign URLs; choose another slug.")


def validate_fallback_url(value: str) -> None:
    if value and not value.startswith(("/", "https://", "http://")):
        raise ValidationError("Use a path on this site (/category/men/) or an http(s) URL.")


class Campaign(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        LIVE = "live", "Live"
        ENDED = "ended", "Ended"
        # Out of the way (hidden from the campaign list by default); its events and report are kept.
        ARCHIVED = "archived", "Archived"

    class ControlKind(models.TextChoices):
        CATEGORY = "category", "Category listing"
        PRODUCTS = "products", "Picked products"

    class Match(models.TextChoices):
        # The match modes of recommendations.matching (SIMILAR, COLOURWAYS).
        SIMILAR = "similar", "Similar in colour and kind"
        COLOURWAYS = "colourways", "Same style in other colours"

    name = models.CharField(max_length=200)
    slug = models.SlugField(
        max_length=100,
        unique=True,
        validators=[validate_not_reserved],
        help_text="The landing page address: /c/this-slug/.",
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT, db_index=True)
    starts_at = models.DateTimeField(null=True, blank=True, help_text="Empty: as soon as it is live.")
    ends_at = models.DateTimeField(null=True, blank=True, help_text="Empty: until it is set to ended.")
    fallback_url = models.CharField(
        max_length=2000,
        blank=True,
        validators=[validate_fallback_url],
        help_text="Where shoppers go once the campaign has ended. Empty: the store's home page.",
    )

    # Which products the landing pages may show.
    store = models.ForeignKey(STORE_MODEL, null=True, blank=True, related_name="+", on_delete=models.SET_NULL)
    categories: models.ManyToManyField = models.ManyToManyField(
        CATEGORY_MODEL,
        blank=True,
        related_name="+",
        help_text="Only products in these categories or below them.",
    )
    min_price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    max_price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    in_stock_only = models.BooleanField(default=True)
    product_count = models.PositiveSmallIntegerField(
        default=24,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Pinned products included.",
    )
    excluded_products: models.ManyToManyField = models.ManyToManyField(
        PRODUCT_MODEL, blank=True, related_name="+", help_text="Never shown on this campaign's pages."
    )
    match = models.CharField(
        max_length=16,
        choices=Match.choices,
        default=Match.SIMILAR,
        help_text="Other colours: products like the ad's, in colours other than the ad's (needs the combined "
        "or adapted embedding recipe to tell colours apart).",
    )

    # Layout.
    headline = models.CharField(max_length=200, blank=True, help_text="Empty: the campaign name.")
    intro = models.TextField(blank=True)
    columns = models.PositiveSmallIntegerField(
        default=4, validators=[MinValueValidator(1), MaxValueValidator(6)]
    )
    show_prices = models.BooleanField(default=True)

    # A/B test: this share of sessions sees the control instead of the visual match.
    control_share_pct = models.PositiveSmallIntegerField(
        "control share (%)",
        default=0,
        validators=[MaxValueValidator(100)],
        help_text="0: everyone sees the visual match (no A/B test).",
    )
    control_kind = models.CharField(max_length=16, choices=ControlKind.choices, default=ControlKind.CATEGORY)
    control_category = models.ForeignKey(
        CATEGORY_MODEL,
        null=True,
        blank=True,
        related_name="+",
        on_delete=models.SET_NULL,
        help_text="The category listing the control shows (with the campaign's other filters).",
    )

    # Part of the landing-page cache key: every change to the campaign or its creatives raises it.
    version = models.PositiveIntegerField(default=1, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
        on_delete=models.SET_NULL,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CampaignQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        permissions = [("view_report", "Can view campaign reports")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(min_price__isnull=True)
                | models.Q(max_price__isnull=True)
                | models.Q(min_price__lte=models.F("max_price")),
                name="campaign_price_range_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        self.version = (self.version or 0) + 1
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("campaigns:landing", kwargs={"slug": self.slug})

    def clean(self) -> None:
        errors = {}
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            errors["max_price"] = "The highest price is below the lowest."
        if self.starts_at and self.ends_at and self.starts_at >= self.ends_at:
            errors["ends_at"] = "The campaign ends before it starts."
        if (
            self.control_share_pct
            and self.control_kind == self.ControlKind.CATEGORY
            and not self.control_category_id
        ):
            errors["control_category"] = "Choose the category listing the control group sees."
        if errors:
            raise ValidationError(errors)

    def is_running(self, *, now=None) -> bool:
        """Live and within its dates: its pages are public and its events are counted."""
        now = now or timezone.now()
        return (
            self.status == self.Status.LIVE
            and (self.starts_at is None or self.starts_at <= now)
            and (self.ends_at is None or now < self.ends_at)
        )

    def has_ended(self, *, now=None) -> bool:
        now = now or timezone.now()
        return self.status in (self.Status.ENDED, self.Status.ARCHIVED) or (
            self.ends_at is not None and self.ends_at <= now
        )


class CampaignProduct(models.Model):
    """A product chosen by the marketer, in the marketer's order."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE)
    product = models.ForeignKey(PRODUCT_MODEL, related_name="+", on_delete=models.CASCADE)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        abstract = True
        ordering = ["position", "pk"]

    def __str__(self) -> str:
        return f"#{self.position}: {self.product}"


class PinnedProduct(CampaignProduct):
    """Shown first on the visual-match pages (when it passes the campaign's stock filter)."""

    campaign = models.ForeignKey(Campaign, related_name="pins", on_delete=models.CASCADE)

    class Meta(CampaignProduct.Meta):
        constraints = [models.UniqueConstraint(fields=["campaign", "product"], name="pinnedproduct_unique")]


class ControlProduct(CampaignProduct):
    """The control group's product list when ``control_kind`` is "products"."""

    campaign = models.ForeignKey(Campaign, related_name="control_picks", on_delete=models.CASCADE)

    class Meta(CampaignProduct.Meta):
        constraints = [models.UniqueConstraint(fields=["campaign", "product"], name="controlproduct_unique")]


# Extensions a stored creative may have (services.CREATIVE_FORMATS names it from the decoded image); any
# other name is stored as .bin, which no web server serves as a page.
CREATIVE_EXTENSIONS = ("jpg", "png", "webp", "gif")


def creative_image_path(instance: Creative, filename: str) -> str:
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if extension not in CREATIVE_EXTENSIONS:
        extension = "bin"
    digest = instance.sha256 or secrets.token_hex(16)
    return f"campaigns/creatives/{digest[:2]}/{digest}.{extension}"


class Creative(models.Model):
    """One ad image. Its vector (made by the active encoder) picks the products of its landing page."""

    class EmbeddingStatus(models.TextChoices):
        PENDING = "pending", "Pending"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    campaign = models.ForeignKey(Campaign, related_name="creatives", on_delete=models.CASCADE)
    name = models.CharField(max_length=200, blank=True)
    slug = models.SlugField(
        max_length=100,
        validators=[validate_not_reserved],
        help_text="Landing page: /c/campaign-slug/this-slug/ (the first creative's also /c/campaign-slug/).",
    )
    position = models.PositiveSmallIntegerField(default=0)
    image = models.ImageField(
        upload_to=creative_image_path, max_length=300, width_field="width", height_field="height", blank=True
    )
    image_url = models.URLField(
        max_length=2000, blank=True, help_text="Instead of an upload: the ad image's address (fetched once)."
    )
    sha256 = models.CharField(max_length=64, blank=True, editable=False)
    width = models.PositiveIntegerField(null=True, blank=True, editable=False)
    height = models.PositiveIntegerField(null=True, blank=True, editable=False)
    headline = models.CharField(max_length=200, blank=True, help_text="Empty: the campaign's headline.")

    # The embedding; vectors from another space than the active one are stale and recomputed.
    space = models.ForeignKey(
        "recommendations.EmbeddingSpace",
        null=True,
        blank=True,
        editable=False,
        related_name="+",
        on_delete=models.SET_NULL,
    )
    vector = HalfVectorField(null=True, blank=True, editable=False)
    # The image's colour + pattern descriptor (recommendations.colour), made with the vector in spaces that
    # store product colours: "other colours" landing pages and the cards' words compare with it.
    descriptor = HalfVectorField(null=True, blank=True, editable=False)
    embedding_status = models.CharField(
        max_length=8, choices=EmbeddingStatus.choices, default=EmbeddingStatus.PENDING, editable=False
    )
    embedding_error = models.CharField(max_length=500, blank=True, editable=False)
    embedded_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["campaign", "position", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "slug"], name="creative_unique_slug_per_campaign")
        ]

    def __str__(self) -> str:
        return self.name or self.slug

    def get_absolute_url(self) -> str:
        return reverse(
            "campaigns:creative_landing", kwargs={"slug": self.campaign.slug, "creative_slug": self.slug}
        )

    def is_ready_for(self, space_id: int | None) -> bool:
        return (
            space_id is not None
            and self.embedding_status == self.EmbeddingStatus.READY
            and self.space_id == space_id
        )


class CampaignEvent(models.Model):
    """One counted thing a shopper did. No personal data: the session key is a random first-party id."""

    class Kind(models.TextChoices):
        IMPRESSION = "impression", "Landing impression"
        CLICK = "click", "Product click"
        ADD_TO_CART = "add_to_cart", "Add to cart"
        PURCHASE = "purchase", "Purchase"

    class Variant(models.TextChoices):
        VISUAL = "visual", "Visual match"
        CONTROL = "control", "Control"
        # The creative had no vector for the active encoder yet: the page showed the filtered listing.
        FALLBACK = "fallback", "Fallback (creative not embedded yet)"

    campaign = models.ForeignKey(Campaign, related_name="events", on_delete=models.CASCADE)
    # Kept when a creative is deleted, so the campaign's totals do not change after the fact.
    creative = models.ForeignKey(Creative, null=True, related_name="events", on_delete=models.SET_NULL)
    variant = models.CharField(max_length=8, choices=Variant.choices)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    session_key = models.CharField(max_length=64)
    product = models.ForeignKey(
        PRODUCT_MODEL, null=True, blank=True, related_name="+", on_delete=models.SET_NULL
    )
    utm = models.JSONField(default=dict, blank=True, help_text="The utm_* parameters of the visit.")
    created_at = models.DateTimeField(default=timezone.now)

    objects = CampaignEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(
                fields=["campaign", "creative", "variant", "session_key"], name="campaignevent_report"
            ),
            models.Index(fields=["campaign", "-created_at"], name="campaignevent_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} on {self.campaign_id}/{self.creative_id} ({self.variant})"
