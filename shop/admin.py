"""Catalog admin: built to stay fast with 100k products (no per-row queries, no full COUNT on every page)."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from shop.models import Category, Product, ProductImage, Store
from shop.querysets import ProductQuerySet


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
    model = ProductImage
    extra = 0
    fields = [
        "preview",
        "position",
        "image",
        "source_url",
        "status",
        "failure_reason",
        "width",
        "height",
        "sha256",
    ]
    readonly_fields = ["preview", "status", "failure_reason", "width", "height", "sha256"]
    ordering = ["position", "pk"]

    @admin.display(description="Preview")
    def preview(self, obj: ProductImage) -> str:
        return thumbnail_html(obj, size_px=96)


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = [
        "thumbnail",
        "title",
        "external_id",
        "store",
        "category",
        "price",
        "currency",
        "in_stock",
        "updated_at",
    ]
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

    def get_queryset(self, request: HttpRequest) -> QuerySet[Product]:
        products: ProductQuerySet = super().get_queryset(request)  # type: ignore[assignment]
        return products.with_primary_image()

    @admin.display(description="Image")
    def thumbnail(self, obj: Product) -> str:
        return thumbnail_html(obj.primary_image)


@admin.register(ProductImage)
class ProductImageAdmin(admin.ModelAdmin):
    list_display = ["thumbnail", "product", "position", "status", "failure_reason", "width", "height"]
    list_filter = ["status"]
    search_fields = ["=sha256", "product__title", "=product__external_id"]
    list_select_related = ["product"]
    raw_id_fields = ["product"]
    show_full_result_count = False
    readonly_fields = ["sha256", "width", "height"]

    @admin.display(description="Image")
    def thumbnail(self, obj: ProductImage) -> str:
        return thumbnail_html(obj)
