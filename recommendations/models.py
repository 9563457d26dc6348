"""Vectors, precomputed neighbours and shopper interactions.

Every vector row says which embedding space made it (encoder + weights); vectors of different spaces are
never compared. Vectors are ``halfvec`` without a fixed dimension in the column: each space gets its own
partial HNSW index on ``(vector::halfvec(<dims>))`` (see ``services.ensure_space_index``), because pgvector
indexes ``vector`` only up to 2,000 dimensions and ResNet-50 has 2,048.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from pgvector.django import HalfVectorField

from lookalike.conf import model_label
from recommendations.querysets import EmbeddingSpaceQuerySet, InteractionQuerySet

PRODUCT_MODEL = model_label("PRODUCT_MODEL")
IMAGE_MODEL = model_label("IMAGE_MODEL")


class EmbeddingSpace(models.Model):
    """One encoder with one set of weights and one recipe. Exactly one space is active for queries at a time.

    The recipe (``recommendations.recipes``) says how an image becomes a vector: the CNN's features alone
    (an empty recipe, as spaces made before recipes existed), the CNN combined with the product's colour and
    pattern, or a space adapted to the catalog (a fine-tuned tail of the CNN and a learned projection, whose
    weights are kept in ``SpaceWeights`` so that any worker can rebuild the encoder).
    """

    class State(models.TextChoices):
        BUILDING = "building", "Building"
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    encoder = models.CharField(max_length=64)
    weights_id = models.CharField(max_length=128)
    # A digest of the recipe; "" for the CNN alone. Spaces differ by (encoder, weights, recipe).
    recipe_id = models.CharField(max_length=64, blank=True, default="")
    recipe = models.JSONField(default=dict, blank=True)
    base = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        related_name="adaptations",
        on_delete=models.SET_NULL,
        help_text="For an adapted space: the space whose vectors it was learned from.",
    )
    dimensions = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.BUILDING, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    objects = EmbeddingSpaceQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["encoder", "weights_id", "recipe_id"], name="space_unique_encoder_weights_recipe"
            ),
            # At most one active space: queries never mix encoders.
            models.UniqueConstraint(
                fields=["state"], condition=models.Q(state="active"), name="space_one_active"
            ),
        ]

    def __str__(self) -> str:
        kind = self.recipe.get("kind", "cnn") if isinstance(self.recipe, dict) else "cnn"
        return f"{self.encoder} {kind} ({self.weights_id}, {self.dimensions}-d, {self.state})"


class SpaceWeights(models.Model):
    """An adapted space's learned weights (``torch.save`` of a state dict, a few MB).

    A table of its own: spaces are read on every product page, and this blob must not travel with them.
    """

    space = models.OneToOneField(EmbeddingSpace, primary_key=True, related_name="+", on_delete=models.CASCADE)
    data = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "space weights"

    def __str__(self) -> str:
        return f"weights of space {self.space_id}"


class Adaptation(models.Model):
    """One run of ``adapt_embeddings``: learn a space from the catalog, validate it, activate it or not."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        ACTIVATED = "activated", "Activated"
        KEPT_BASE = "kept_base", "Kept the base space"
        FAILED = "failed", "Failed"

    base_space = models.ForeignKey(EmbeddingSpace, related_name="+", on_delete=models.CASCADE)
    space = models.ForeignKey(
        EmbeddingSpace, null=True, blank=True, related_name="adaptation_runs", on_delete=models.SET_NULL
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    options = models.JSONField(default=dict, blank=True)
    # Validation metrics of the base and the adapted space on held-out products, and the decision.
    report = models.JSONField(default=dict, blank=True)
    message = models.TextField(blank=True)
    progress = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"adaptation {self.pk} of space {self.base_space_id}: {self.status}"


class ImageEmbedding(models.Model):
    """The vector of one catalog image in one space, or why it could not be made."""

    class Status(models.TextChoices):
        EMBEDDED = "embedded", "Embedded"
        FAILED = "failed", "Failed"

    space = models.ForeignKey(EmbeddingSpace, related_name="image_embeddings", on_delete=models.CASCADE)
    image = models.ForeignKey(IMAGE_MODEL, related_name="embeddings", on_delete=models.CASCADE)
    product = models.ForeignKey(PRODUCT_MODEL, related_name="image_embeddings", on_delete=models.CASCADE)
    # The bytes the vector was made from: a changed image has a new digest and is embedded again.
    sha256 = models.CharField(max_length=64, db_index=True)
    vector = HalfVectorField(null=True, blank=True)
    # Colour and pattern of the product in the photo (recommendations.colour); null without a recipe.
    descriptor = HalfVectorField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.EMBEDDED)
    failure_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["space", "image"], name="imageembedding_unique_space_image")
        ]
        indexes = [models.Index(fields=["space", "product"], name="imageembedding_space_product")]

    def __str__(self) -> str:
        return f"image {self.image_id} in space {self.space_id}"


class ProductEmbedding(models.Model):
    """A product's query vector in one space: its primary image's vector or the mean of its images'."""

    space = models.ForeignKey(EmbeddingSpace, related_name="product_embeddings", on_delete=models.CASCADE)
    product = models.ForeignKey(PRODUCT_MODEL, related_name="embeddings", on_delete=models.CASCADE)
    vector = HalfVectorField()
    # The primary image's colour and pattern descriptor (recommendations.colour), for "other colours" and
    # for saying why a card matched; null in spaces whose recipe has none.
    descriptor = HalfVectorField(null=True, blank=True)
    # Digests of the product's images: products sharing a byte-identical photo are not each other's matches.
    image_sha256s = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["space", "product"], name="productembedding_unique_space_product")
        ]
        indexes = [models.Index(fields=["product", "space"], name="productembedding_product_space")]

    def __str__(self) -> str:
        return f"product {self.product_id} in space {self.space_id}"


class ProductNeighbours(models.Model):
    """A product's precomputed exact top-K neighbours in a space (``manage.py compute_neighbours``), best
    first.

    One row per product with the ids and scores as arrays: a run writes 100,000 rows for 100,000 products
    instead of 2,000,000 (one per pair), and a product page reads one row. ``neighbour_ids`` are product
    primary keys without a foreign key: a deleted product is skipped by the readers (and gone after the
    next run).
    """

    space = models.ForeignKey(EmbeddingSpace, related_name="neighbours", on_delete=models.CASCADE)
    product = models.ForeignKey(PRODUCT_MODEL, related_name="+", on_delete=models.CASCADE)
    neighbour_ids = ArrayField(models.BigIntegerField())
    scores = ArrayField(models.FloatField())  # cosine similarity, same order as neighbour_ids
    computed_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "product neighbours"
        constraints = [
            models.UniqueConstraint(fields=["space", "product"], name="productneighbours_unique_product")
        ]

    def __str__(self) -> str:
        return f"neighbours of {self.product_id} in space {self.space_id}"


class Interaction(models.Model):
    """What a shopper did with a product. Anonymous shoppers are identified by their session key only."""

    class Kind(models.TextChoices):
        VIEW = "view", "View"
        CLICK = "click", "Click"
        LIKE = "like", "Like"
        DISLIKE = "dislike", "Dislike / hide"
        ADD_TO_CART = "add_to_cart", "Add to cart"
        PURCHASE = "purchase", "Purchase"

    session_key = models.CharField(max_length=64, db_index=True, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    product = models.ForeignKey(PRODUCT_MODEL, related_name="interactions", on_delete=models.CASCADE)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    source = models.CharField(max_length=64, blank=True, help_text="The page or widget it happened on.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = InteractionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["session_key", "-created_at"], name="interaction_session_recent"),
            models.Index(fields=["user", "-created_at"], name="interaction_user_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.product_id}"


class ShownProduct(models.Model):
    """Products a session has been shown on personalised pages, so they are not repeated."""

    session_key = models.CharField(max_length=64)
    product = models.ForeignKey(PRODUCT_MODEL, related_name="+", on_delete=models.CASCADE)
    page = models.CharField(max_length=32)
    round = models.PositiveIntegerField(default=0)
    shown_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["session_key", "page", "product"], name="shownproduct_unique")
        ]
        indexes = [models.Index(fields=["session_key", "page", "round"], name="shownproduct_session_page")]

    def __str__(self) -> str:
        return f"{self.product_id} shown on {self.page}"


class EmbeddingBatch(models.Model):
    """One queued ``embed_images`` task and the lease of the worker running it (``recommendations.leases``).

    A worker that dies mid-batch stops renewing its lease; the sweeper (``requeue_expired_batches``, run by
    Celery beat) queues the batch again once the lease has expired, and the first run to finish marks it
    done, so a late redelivery of the original message finds nothing to do.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"  # its workers died BATCH_MAX_ATTEMPTS times

    image_ids = ArrayField(models.BigIntegerField())
    # None: every live space at the time the batch runs.
    space = models.ForeignKey(
        EmbeddingSpace, null=True, blank=True, related_name="+", on_delete=models.CASCADE
    )
    weights = models.CharField(max_length=500, blank=True)
    force = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "embedding batches"
        indexes = [
            # The sweeper's query. Batches waiting in the queue for the first time, and finished ones, have
            # no lease: only running and requeued batches are in this index.
            models.Index(
                fields=["lease_expires_at"],
                condition=models.Q(lease_expires_at__isnull=False),
                name="embeddingbatch_lease",
            ),
            # Finished batches are deleted by the sweeper after BATCH_KEEP_S.
            models.Index(
                fields=["finished_at"],
                condition=models.Q(status="done"),
                name="embeddingbatch_done",
            ),
        ]

    def __str__(self) -> str:
        return f"embedding batch {self.pk} ({len(self.image_ids)} images, {self.status})"
