"""Admin of the embedding pipeline: spaces with their counts, every image's embedding, re-embed actions.

The catalog's product and image admins (shop/admin.py, or a shop's own) are extended from here: the class
registered for the catalog model is subclassed with an "Embedding" column, the embeddings inline and a
"Re-embed" action, and registered again. The catalog app never imports this one, and a shop's own admin
classes get the same additions. This module must be imported after the catalog's admin (list the catalog
app before "recommendations" in INSTALLED_APPS); a catalog model registered later keeps its plain admin, and
the "Image embeddings" list below shows the same information.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, IntegerField, Model, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, path
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from lookalike import catalog
from recommendations import adaptation, services
from recommendations.models import Adaptation, EmbeddingSpace, ImageEmbedding, ProductEmbedding

EMBEDDED, FAILED = ImageEmbedding.Status.EMBEDDED, ImageEmbedding.Status.FAILED


def _count_per_space(model: type[Model], **filters: Any) -> Coalesce:
    rows = model._default_manager.filter(space=OuterRef("pk"), **filters).order_by().values("space")
    return Coalesce(Subquery(rows.annotate(n=Count("*")).values("n")), 0, output_field=IntegerField())


def _shortened(text: str, max_chars: int = 40) -> str:
    """A long value cut for a column, whole in the tooltip and on the row's own page."""
    if len(text) <= max_chars:
        return text
    return format_html('<span title="{}">{}…</span>', text, text[: max_chars - 1])


def _queue_message(request: HttpRequest, count: int) -> None:
    messages.success(request, f"{count:,} images queued for embedding on the embeddings queue.")


def _progress(space: EmbeddingSpace) -> dict[str, Any]:
    embedded, failed = space._embedded, space._failed  # type: ignore[attr-defined]
    total = max(space._catalog_images, embedded + failed)  # type: ignore[attr-defined]
    return {
        "id": space.pk,
        "state": space.state,
        "embedded": embedded,
        "failed": failed,
        "done": embedded + failed,
        "total": total,
        "products": space._products,  # type: ignore[attr-defined]
    }


@admin.register(EmbeddingSpace)
class EmbeddingSpaceAdmin(admin.ModelAdmin):
    """Spaces with their embedding progress: done / total / failed with a bar that follows the workers live
    (``progress/`` answers the same counts as JSON; a small script polls it while a space is unfinished)."""

    list_display = ["space", "state", "progress", "products_with_vector", "activated_at"]
    list_filter = ["state", "encoder"]
    readonly_fields = [
        "encoder",
        "weights_id",
        "recipe_id",
        "recipe",
        "base",
        "dimensions",
        "state",
        "created_at",
        "activated_at",
    ]
    actions = ["activate", "queue_missing_images", "adapt_to_catalog"]

    class Media:
        js = ["recommendations/embedding_progress.js"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # spaces come from `manage.py embed_catalog --encoder ... --weights ...`

    def get_queryset(self, request: HttpRequest) -> QuerySet[EmbeddingSpace]:
        catalog_images = services.embeddable_images().count()  # once per page, not per row
        return (
            super()
            .get_queryset(request)
            .annotate(
                _embedded=_count_per_space(ImageEmbedding, status=EMBEDDED),
                _failed=_count_per_space(ImageEmbedding, status=FAILED),
                _products=_count_per_space(ProductEmbedding),
                _catalog_images=Value(catalog_images, output_field=IntegerField()),
            )
        )

    def get_urls(self) -> list[URLPattern]:
        progress = path(
            "progress/",
            self.admin_site.admin_view(self.progress_view),
            name="recommendations_embeddingspace_progress",
        )
        return [progress, *super().get_urls()]

    def progress_view(self, request: HttpRequest) -> JsonResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        spaces = self.get_queryset(request).exclude(state=EmbeddingSpace.State.RETIRED)
        return JsonResponse({"spaces": [_progress(space) for space in spaces]})

    @admin.display(description="Space")
    def space(self, space: EmbeddingSpace) -> str:
        kind = space.recipe.get("kind", "cnn") if isinstance(space.recipe, dict) else "cnn"
        label = f"{space.encoder} {kind} · {space.dimensions}-d"
        return format_html('<span style="white-space:nowrap">{}</span>', label)

    @admin.display(description="Embedded images (done / total, failed)", ordering="_embedded")
    def progress(self, space: EmbeddingSpace) -> str:
        counts = _progress(space)
        if not counts["total"]:
            return "no images"
        return format_html(
            '<div class="embedding-progress" style="white-space:nowrap" data-space="{}" data-finished="{}">'
            '<progress value="{}" max="{}" style="width:10rem"></progress> '
            '<span data-field="done">{}</span> / <span data-field="total">{}</span>, '
            '<span data-field="failed">{}</span> failed</div>',
            space.pk,
            "1" if counts["done"] >= counts["total"] else "0",
            counts["done"],
            counts["total"],
            f"{counts['done']:,}",
            f"{counts['total']:,}",
            f"{counts['failed']:,}",
        )

    @admin.display(description="Products with a vector", ordering="_products")
    def products_with_vector(self, space: EmbeddingSpace) -> str:
        return f"{space._products:,}"  # type: ignore[attr-defined]

    # Actions change what the shop serves: a view-only user must not see or run them (Django offers an
    # action without ``permissions`` to everyone who can see the list).
    @admin.action(
        description="Activate: queries use this space (only when it holds every image)",
        permissions=["change"],
    )
    def activate(self, request: HttpRequest, queryset: QuerySet[EmbeddingSpace]) -> None:
        if queryset.count() != 1:
            messages.error(request, "Select exactly one space to activate.")
            return
        space = queryset.get()
        missing = len(services.missing_image_ids(space))
        if missing:
            messages.error(
                request,
                f"{space} is missing {missing:,} images: queries would lose those products. Queue them with "
                "the action “Queue the missing images”; the space is activated when they are done.",
            )
            return
        services.activate_space(space)
        messages.success(request, f"{space} is now the active embedding space.")

    @admin.action(
        description="Queue the missing images (a building space is activated when complete)",
        permissions=["change"],
    )
    def queue_missing_images(self, request: HttpRequest, queryset: QuerySet[EmbeddingSpace]) -> None:
        from recommendations.encoders import EncoderWeightsUnavailable

        for space in queryset.exclude(state=EmbeddingSpace.State.RETIRED):
            try:
                weights = services.space_weights(space)
            except EncoderWeightsUnavailable as error:
                messages.error(request, str(error))
                continue
            missing = services.missing_image_ids(space)
            # The task that embeds the last missing image of a building space activates it.
            services.queue_image_embedding(missing, space=space, weights=weights)
            _queue_message(request, len(missing))

    @admin.action(
        description="Adapt to the catalog (learn from its photos and labels; activated only when better)",
        permissions=["change"],
    )
    def adapt_to_catalog(self, request: HttpRequest, queryset: QuerySet[EmbeddingSpace]) -> None:
        active = queryset.filter(state=EmbeddingSpace.State.ACTIVE).first()
        if active is None:
            messages.error(request, "Select the active space: adaptation learns from its catalog.")
            return
        run = adaptation.start_adaptation()
        messages.success(
            request,
            f"Queued adaptation {run.pk} for an embedding worker; its report appears under Adaptations.",
        )


@admin.register(Adaptation)
class AdaptationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "status", "progress", "message", "created_at", "finished_at"]
    list_filter = ["status"]
    readonly_fields = [
        "base_space",
        "space",
        "status",
        "progress",
        "message",
        "report_table",
        "options",
        "created_at",
        "finished_at",
    ]
    exclude = ["report"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs come from the space action or `manage.py adapt_embeddings`

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Held-out products: base vs adapted")
    def report_table(self, run: Adaptation) -> str:
        base, adapted = run.report.get("base", {}), run.report.get("adapted", {})
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (name, f"{base.get(name, float('nan')):.3f}", f"{value:.3f}")
                for name, value in adapted.items()
            ),
        )
        counts = format_html_join(
            "",
            "<li>{}: {}</li>",
            ((name.replace("_", " "), value) for name, value in run.report.items() if isinstance(value, int)),
        )
        if run.report.get("pull"):
            pull = adaptation.describe_pull(run.report["pull"])
            counts = format_html("{}<li>prototype pull: {}</li>", counts, pull)
        return format_html(
            "<table><tr><th>metric</th><th>base</th><th>adapted</th></tr>{}</table><ul>{}</ul>", rows, counts
        )


@admin.register(ImageEmbedding)
class ImageEmbeddingAdmin(admin.ModelAdmin):
    """Every image's vector (or failure) per space: the place to find what failed and why."""

    # Foreign keys in list_display never wrap (Django marks them nowrap): the product goes through a method.
    list_display = ["image_id", "product_title", "space_id", "status", "failure", "created_at"]
    list_filter = ["status", "space"]
    search_fields = ["=sha256", "=image__id", "=product__id"]
    list_select_related = ["space", "product"]
    show_full_result_count = False  # COUNT(*) over every image of every space on each page is the slow part
    readonly_fields = ["space", "image", "product", "sha256", "status", "failure_reason", "created_at"]
    exclude = ["vector"]
    actions = ["reembed"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Failure", ordering="failure_reason")
    def failure(self, row: ImageEmbedding) -> str:
        return _shortened(row.failure_reason)

    @admin.display(description="Product")
    def product_title(self, row: ImageEmbedding) -> str:
        return _shortened(str(row.product), max_chars=60)

    def has_reembed_permission(self, request: HttpRequest) -> bool:
        # The rows are read-only here (has_change_permission), yet queueing new vectors is a change.
        return request.user.has_perm("recommendations.change_imageembedding")

    @admin.action(description="Re-embed the images of the selected rows", permissions=["reembed"])
    def reembed(self, request: HttpRequest, queryset: QuerySet[ImageEmbedding]) -> None:
        _queue_message(request, services.reembed_images(queryset.values_list("image_id", flat=True)))


class ImageEmbeddingInline(admin.TabularInline):
    model = ImageEmbedding
    fk_name = "product"
    extra = 0
    max_num = 0
    can_delete = False
    # Short columns: the digest and the whole failure reason are on the "Image embeddings" pages.
    fields = ["image", "space", "status", "failure", "created_at"]
    readonly_fields = ["image", "space", "status", "failure", "created_at"]
    verbose_name_plural = "Embeddings (per image and space)"

    @admin.display(description="Failure")
    def failure(self, row: ImageEmbedding) -> str:
        return _shortened(row.failure_reason)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ImageEmbedding]:
        return super().get_queryset(request).select_related("space")


def _status_html(status: str | None, reason: str | None) -> str:
    if status == EMBEDDED:
        return mark_safe('<span title="embedded in the active space">✓ embedded</span>')
    if status == FAILED:
        return format_html('<span style="color:#ba2121" title="{}">✗ failed</span>', reason or "")
    return "pending"


class ProductEmbeddingAdminMixin:
    """Added to the catalog's product admin: status in the active space, the inline, a re-embed action."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        active = services.get_active_space()
        space_id = active.pk if active is not None else None
        failed = ImageEmbedding.objects.filter(space_id=space_id, product=OuterRef("pk"), status=FAILED)
        return queryset.annotate(
            _embedded=Exists(ProductEmbedding.objects.filter(space_id=space_id, product=OuterRef("pk"))),
            _failure=Subquery(failed.values("failure_reason")[:1]),
        )

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        return [*super().get_list_display(request), "embedding_status"]  # type: ignore[misc]

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[Any]:
        return [*super().get_inlines(request, obj), ImageEmbeddingInline]  # type: ignore[misc]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)  # type: ignore[misc]
        if self.has_change_permission(request):  # type: ignore[attr-defined]
            actions["reembed_products"] = (
                ProductEmbeddingAdminMixin.reembed_products,
                "reembed_products",
                "Re-embed the images of the selected products",
            )
        return actions

    @admin.display(description="Embedding")
    def embedding_status(self, product: Any) -> str:
        if product._embedded:
            return _status_html(EMBEDDED, None)
        return _status_html(FAILED if product._failure else None, product._failure)

    def reembed_products(self, request: HttpRequest, queryset: QuerySet) -> None:
        product_ids = list(queryset.values_list("pk", flat=True))
        product_field = catalog.image_field("product") or "product"
        images = services.embeddable_images().filter(**{f"{product_field}__in": product_ids})
        _queue_message(request, services.reembed_images(images.values_list("pk", flat=True)))


class ImageEmbeddingAdminMixin:
    """Added to the catalog's image admin: status in the active space and a re-embed action."""

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        active = services.get_active_space()
        rows = ImageEmbedding.objects.filter(space_id=active.pk if active else None, image=OuterRef("pk"))
        return queryset.annotate(
            _embedding_status=Subquery(rows.values("status")[:1]),
            _embedding_failure=Subquery(rows.values("failure_reason")[:1]),
        )

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        return [*super().get_list_display(request), "embedding_status"]  # type: ignore[misc]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)  # type: ignore[misc]
        if self.has_change_permission(request):  # type: ignore[attr-defined]
            actions["reembed_images"] = (
                ImageEmbeddingAdminMixin.reembed_images,
                "reembed_images",
                "Re-embed the selected images",
            )
        return actions

    @admin.display(description="Embedding")
    def embedding_status(self, image: Any) -> str:
        return _status_html(image._embedding_status, image._embedding_failure)

    def reembed_images(self, request: HttpRequest, queryset: QuerySet) -> None:
        _queue_message(request, services.reembed_images(queryset.values_list("pk", flat=True)))


def extend_catalog_admin(model: type, mixin: type, site: admin.AdminSite = admin.site) -> bool:
    """Re-register ``model``'s admin as a subclass with ``mixin`` in front; False when it is unregistered."""
    if not site.is_registered(model):
        return False
    current: type[admin.ModelAdmin] = type(site.get_model_admin(model))
    if issubclass(current, mixin):
        return True
    site.unregister(model)
    site.register(
        model, type(f"{current.__name__}WithEmbeddings", (mixin, current), {"__module__": __name__})
    )
    return True


extend_catalog_admin(catalog.product_model(), ProductEmbeddingAdminMixin)
extend_catalog_admin(catalog.image_model(), ImageEmbeddingAdminMixin)
