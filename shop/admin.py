"""Catalog admin: built to stay fast with 100k products (no per-row queries, no full COUNT on every page)."""

from typing import Any

from django import forms
from django.contrib import admin
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from shop.models import Category, Product, ProductImage, Store
from shop.querysets import ProductQuerySet

# A typed address without a scheme is https (Django 6's default, said explicitly).
URL_FIELDS_ASSUME_HTTPS: dict[type[models.Field], dict[str, Any]] = {
    models.URLField: {"assume_scheme": "https"}
}


def thumbnail_html(image: ProductImage | None, size_px: int = 64) -> str:
    if image is None or not image.image:
        return "—"
    return format_html(
        '<img src="{}" width="{}" height="{}" style="object-fit:cover;border-radius:4px" alt="">',
        image.image.url,
        size_px,
        size_px,
    )


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    formfield_overrides = URL_FIELDS_ASSUME_HTTPS
    list_display = ["name", "base_url", "currency", "created_at", "import_link"]
    search_fields = ["name", "base_url"]

    @admin.display(description="Catalog")
    def import_link(self, obj: Store) -> str:
        # The import app is optional: link to it only where it is installed.
        try:
            url = reverse("admin:scraper_importjob_add")
        except NoReverseMatch:
            return ""
        return format_html('<a href="{}?store={}">Import catalog</a>', url, obj.pk)


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["__str__", "slug", "parent"]
    search_fields = ["name", "path"]
    list_select_related = ["parent"]
    autocomplete_fields = ["parent"]


class ProductImageInline(admin.TabularInline):
    """Short columns only: the source URL, digest and failure reason live on each image's own page."""

    model = ProductImage
    extra = 0
    fields = ["preview", "position", "image", "status", "size", "details"]
    readonly_fields = ["preview", "status", "size", "details"]
    ordering = ["position", "pk"]
    # A plain file input: Django's default also prints the stored file's long path.
    formfield_overrides = {
        **URL_FIELDS_ASSUME_HTTPS,
        models.ImageField: {"widget": forms.FileInput},
    }

    @admin.display(description="Preview")
    def preview(self, obj: ProductImage) -> str:
        return thumbnail_html(obj, size_px=96)

    @admin.display(description="Size")
    def size(self, obj: ProductImage) -> str:
        return image_size(obj)

    @admin.display(description="Source, digest, failure")
    def details(self, obj: ProductImage) -> str:
        if obj.pk is None:
            return ""
        return format_html(
            '<a href="{}">Details</a>', reverse("admin:shop_productimage_change", args=[obj.pk])
        )


def image_size(image: ProductImage) -> str:
    return f"{image.width} × {image.height}" if image.width and image.height else "—"


def shortened(text: str, max_chars: int = 40) -> str:
    """A long value cut for a list column, whole in the tooltip (and on the detail page)."""
    if len(text) <= max_chars:
        return text
    return format_html('<span title="{}">{}…</span>', text, text[: max_chars - 1])


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    # Foreign keys in list_display never wrap (Django marks them nowrap): long names go through methods.
    list_display = ["thumbnail", "title", "price_display", "in_stock", "category_name", "store"]
    list_display_links = ["thumbnail", "title"]
    list_filter = ["in_stock", "store", ("category", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["title", "=external_id"]
    list_select_related = ["store", "category"]
    list_per_page = 50
    # COUNT(*) over 100k rows on every changelist page is the slow part; the paginator still works.
    show_full_result_count = False
    ordering = ["-updated_at", "-id"]
    autocomplete_fields = ["category"]
    inlines = [ProductImageInline]
    readonly_fields = ["created_at", "updated_at"]
    formfield_overrides = URL_FIELDS_ASSUME_HTTPS

    def get_queryset(self, request: HttpRequest) -> QuerySet[Product]:
        products: ProductQuerySet = super().get_queryset(request)  # type: ignore[assignment]
        return products.with_primary_image()

    @admin.display(description="Image")
    def thumbnail(self, obj: Product) -> str:
        return thumbnail_html(obj.primary_image, size_px=48)

    @admin.display(description="Category", ordering="category__path")
    def category_name(self, obj: Product) -> str:
        return obj.category.name if obj.category else "—"

    @admin.display(description="Price", ordering="price")
    def price_display(self, obj: Product) -> str:
        return f"{obj.price} {obj.currency}" if obj.price is not None else "—"


@admin.register(ProductImage)
class ProductImageAdmin(admin.ModelAdmin):
    list_display = ["thumbnail", "product_title", "position", "status", "failure", "size"]
    list_filter = ["status"]
    search_fields = ["=sha256", "product__title", "=product__external_id"]
    list_select_related = ["product"]
    raw_id_fields = ["product"]
    show_full_result_count = False
    readonly_fields = ["sha256", "width", "height"]
    formfield_overrides = URL_FIELDS_ASSUME_HTTPS

    @admin.display(description="Image")
    def thumbnail(self, obj: ProductImage) -> str:
        return thumbnail_html(obj, size_px=48)

    @admin.display(description="Product", ordering="product__title")
    def product_title(self, obj: ProductImage) -> str:
        return shortened(obj.product.title, max_chars=60)

    @admin.display(description="Failure", ordering="failure_reason")
    def failure(self, obj: ProductImage) -> str:
        return shortened(obj.failure_reason)

    @admin.display(description="Size")
    def size(self, obj: ProductImage) -> str:
        return image_size(obj)
