"""The bundled catalog: the default product and image models and the demo store.

The plugin apps reach these only through ``lookalike.catalog`` (the ``LOOKALIKE`` setting; these are its
defaults), so a shop can use its own models.
"""

from __future__ import annotations

from django.db import models
from django.urls import reverse
from django.utils.text import slugify

from shop.querysets import CategoryQuerySet, ProductImageQuerySet, ProductQuerySet


class Store(models.Model):
    name = models.CharField(max_length=200)
    base_url = models.URLField(blank=True, help_text="The store's home page, e.g. https://example.com/")
    currency = models.CharField(max_length=3, default="EUR")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Category(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200)
    parent = models.ForeignKey(
        "self", null=True, blank=True, related_name="children", on_delete=models.CASCADE
    )
    # Materialised path ("men/shirts/") so a whole subtree is one indexed prefix query.
    path = models.CharField(max_length=1000, editable=False, db_index=True)

    objects = CategoryQuerySet.as_manager()

    class Meta:
        ordering = ["path"]
        verbose_name_plural = "categories"
        constraints = [models.UniqueConstraint(fields=["path"], name="category_unique_path")]

    def __str__(self) -> str:
        return " > ".join(self.path.strip("/").split("/")) if self.path else self.name

    def save(self, *args, **kwargs) -> None:
        self.slug = self.slug or slugify(self.name)[:200] or "category"
        self.path = (self.parent.path if self.parent else "") + self.slug + "/"
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("shop:category", kwargs={"path": self.path.rstrip("/")})

    def breadcrumbs(self) -> list[Category]:
        """The category's ancestors and itself, root first, in one query (the path names each prefix)."""
        parts = self.path.strip("/").split("/")
        prefixes = ["/".join(parts[: i + 1]) + "/" for i in range(len(parts))]
        return list(Category.objects.filter(path__in=prefixes).order_by("path"))

    @classmethod
    def from_path(cls, names: list[str]) -> Category | None:
        """Get or create the category ``names[0] > names[1] > ...``; None for an empty path."""
        parent = None
        for name in [n.strip() for n in names if n and n.strip()]:
            slug = slugify(name)[:200] or "category"
            path = (parent.path if parent else "") + slug + "/"
            parent, _ = cls.objects.get_or_create(
                path=path, defaults={"name": name, "slug": slug, "parent": parent}
            )
        return parent


class Product(models.Model):
    store = models.ForeignKey(Store, related_name="products", on_delete=models.CASCADE)
    external_id = models.CharField(max_length=255, help_text="The product's id in the store it came from.")
    title = models.CharField(max_length=500)
    description = models.TextField(blank=True)
    url = models.URLField(max_length=2000, blank=True, help_text="The product page in the source store.")
    brand = models.CharField(max_length=200, blank=True, db_index=True)
    price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, default="EUR")
    in_stock = models.BooleanField(default=True)
    category = models.ForeignKey(
        Category, null=True, blank=True, related_name="products", on_delete=models.SET_NULL
    )
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProductQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["store", "external_id"], name="product_unique_external_id_per_store"
            ),
        ]
        indexes = [
            models.Index(fields=["store", "in_stock"], name="product_store_stock"),
            models.Index(fields=["category", "in_stock"], name="product_category_stock"),
            models.Index(fields=["price"], name="product_price"),
            models.Index(fields=["-updated_at", "-id"], name="product_recent"),
        ]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("shop:product", kwargs={"pk": self.pk})

    @property
    def primary_image(self) -> ProductImage | None:
        images = getattr(self, "ordered_images", None)
        if images is not None:
            return images[0] if images else None
        return self.images.order_by("position", "pk").first()


def product_image_path(instance: ProductImage, filename: str) -> str:
    # Content-addressed: the same photo is stored once however many products or imports use it.
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else "jpg"
    digest = instance.sha256 or "unhashed"
    return f"products/{digest[:2]}/{digest}.{extension}"


class ProductImage(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending download"
        STORED = "stored", "Stored"
        FAILED = "failed", "Failed"

    product = models.ForeignKey(Product, related_name="images", on_delete=models.CASCADE)
    source_url = models.URLField(max_length=2000, blank=True)
    image = models.ImageField(
        upload_to=product_image_path, blank=True, width_field="width", height_field="height"
    )
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    position = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProductImageQuerySet.as_manager()

    class Meta:
        ordering = ["product", "position", "pk"]
        indexes = [models.Index(fields=["product", "position"], name="productimage_product_position")]

    def __str__(self) -> str:
        return f"{self.product_id} #{self.position}"
