"""Campaign admin: campaigns with their creatives and product lists, reports, CSV exports, bulk upload."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from campaigns import selectors, services
from campaigns.forms import BulkUploadForm, CampaignForm, CreativeForm
from campaigns.models import Campaign, ControlProduct, Creative, PinnedProduct
from campaigns.stats import Lift, Proportion
from scraper.parsers.records import FeedError


def creative_preview(creative: Creative, size_px: int = 96) -> str:
    if not creative.image:
        return "—"
    return format_html(
        '<img src="{}" width="{}" style="max-height:{}px;object-fit:contain;border-radius:4px" alt="">',
        creative.image.url,
        size_px,
        size_px,
    )


def embedding_state(creative: Creative) -> str:
    if creative.embedding_status == Creative.EmbeddingStatus.READY:
        embedded_at = f"{creative.embedded_at:%Y-%m-%d %H:%M}" if creative.embedded_at else "?"
        return format_html("Ready (space {}, {})", creative.space_id, embedded_at)
    if creative.embedding_error:
        return format_html("{}: {}", creative.get_embedding_status_display(), creative.embedding_error)
    return creative.get_embedding_status_display() if creative.pk else "—"


def _save_creative_form(form: CreativeForm, request: HttpRequest) -> None:
    try:
        services.save_creative(creative=form.instance, image_data=form.image_data)
    except services.CreativeImageError as error:  # checked in the form already; a race with a URL change
        messages.error(request, f"{form.instance}: {error.reason}")


class CreativeInline(admin.StackedInline):
    model = Creative
    form = CreativeForm
    extra = 0
    fields = ["name", "slug", "position", "image", "image_url", "headline", "preview", "embedding"]
    readonly_fields = ["preview", "embedding"]

    def get_extra(self, request: HttpRequest, obj: Campaign | None = None, **kwargs: Any) -> int:
        return 0 if obj is not None and obj.creatives.exists() else 1

    @admin.display(description="Preview")
    def preview(self, obj: Creative) -> str:
        return creative_preview(obj)

    @admin.display(description="Embedding")
    def embedding(self, obj: Creative) -> str:
        return embedding_state(obj)


class PinnedProductInline(admin.TabularInline):
    model = PinnedProduct
    extra = 0
    raw_id_fields = ["product"]
    verbose_name = "pinned product"
    verbose_name_plural = "Pinned products (shown first on visual-match pages)"


class ControlProductInline(admin.TabularInline):
    model = ControlProduct
    extra = 0
    raw_id_fields = ["product"]
    verbose_name = "control product"
    verbose_name_plural = "Control products (when the control is a picked list)"


class ArchivedFilter(admin.SimpleListFilter):
    """Archived campaigns stay out of the list unless asked for."""

    title = "archived"
    parameter_name = "archived"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Archived only"), ("all", "All")]

    def choices(self, changelist: Any) -> Any:
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "Not archived",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> QuerySet[Campaign]:
        if self.value() == "yes":
            return queryset.filter(status=Campaign.Status.ARCHIVED)
        if self.value() == "all":
            return queryset
        return queryset.exclude(status=Campaign.Status.ARCHIVED)


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    form = CampaignForm
    list_display = ["name", "status", "starts_at", "ends_at", "creative_count", "control_share_pct", "links"]
    list_filter = [ArchivedFilter, "status"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    raw_id_fields = ["excluded_products"]
    readonly_fields = ["created_by", "created_at", "updated_at"]
    inlines = [CreativeInline, PinnedProductInline, ControlProductInline]
    # Marketers archive; deleting a campaign also deletes its events and report, so only users given
    # campaigns.delete_campaign (not the Marketing group) see Django's delete action.
    actions = ["export_recommended_urls", "archive"]
    change_list_template = "admin/campaigns/campaign/change_list.html"
    fieldsets = [
        (None, {"fields": ["name", "slug", "status", ("starts_at", "ends_at"), "fallback_url"]}),
        (
            "Products",
            {
                "fields": [
                    "store",
                    "categories",
                    ("min_price", "max_price"),
                    "in_stock_only",
                    "product_count",
                    "excluded_products",
                    "match",
                ]
            },
        ),
        ("Layout", {"fields": ["headline", "intro", "columns", "show_prices"]}),
        (
            "A/B test",
            {
                "fields": ["control_share_pct", "control_kind", "control_category"],
                "description": "A share of sessions sees a control page instead of the visual match; "
                "each session always sees the same variant.",
            },
        ),
        ("History", {"fields": ["created_by", "created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    def get_autocomplete_fields(self, request: HttpRequest) -> list[str]:
        # Autocomplete needs an admin for the related model; a shop's own catalog may not register one.
        names = ["store", "categories", "control_category"]
        return [
            name
            for name in names
            if Campaign._meta.get_field(name).related_model in self.admin_site._registry
        ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Campaign]:
        return super().get_queryset(request).annotate(creative_total=Count("creatives"))

    @admin.display(description="Creatives", ordering="creative_total")
    def creative_count(self, obj: Campaign) -> int:
        return getattr(obj, "creative_total", 0)

    @admin.display(description="Pages")
    def links(self, obj: Campaign) -> str:
        return format_html(
            '<a href="{}" target="_blank">landing page</a> · <a href="{}">report</a>',
            obj.get_absolute_url(),
            reverse("admin:campaigns_campaign_report", args=[obj.pk]),
        )

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        if not change:
            obj.created_by_id = request.user.pk
        super().save_model(request, obj, form, change)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not Creative:
            super().save_formset(request, form, formset, change)
            return
        formset.save(commit=False)
        for creative in formset.deleted_objects:
            creative.delete()
        for creative_form in formset.forms:
            if creative_form in formset.deleted_forms or not creative_form.has_changed():
                continue
            creative_form.instance.campaign = form.instance
            _save_creative_form(creative_form, request)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # Pins, exclusions and categories are saved after the campaign row: invalidate its pages again.
        services.bump_campaign_version(form.instance.pk)

    # -- reports and exports

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("bulk-upload/", view(self.bulk_upload_view), name="campaigns_campaign_bulk_upload"),
            path("<int:object_id>/report/", view(self.report_view), name="campaigns_campaign_report"),
            path(
                "<int:object_id>/report.csv", view(self.report_csv_view), name="campaigns_campaign_report_csv"
            ),
            path(
                "<int:object_id>/recommended.csv",
                view(self.recommended_csv_view),
                name="campaigns_campaign_recommended_csv",
            ),
            *super().get_urls(),
        ]

    def _report_campaign(self, request: HttpRequest, object_id: int) -> Campaign:
        if not request.user.has_perm("campaigns.view_report"):
            raise PermissionDenied
        return get_object_or_404(Campaign, pk=object_id)

    def report_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        campaign = self._report_campaign(request, object_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Report: {campaign}",
            "campaign": campaign,
            "report": selectors.campaign_report(campaign=campaign),
        }
        return TemplateResponse(request, "admin/campaigns/campaign/report.html", context)

    def report_csv_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        campaign = self._report_campaign(request, object_id)
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="campaign-{campaign.slug}-report.csv"'
        write_report_csv(response, selectors.campaign_report(campaign=campaign))
        return response

    def recommended_csv_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        campaign = get_object_or_404(Campaign, pk=object_id)
        return recommended_csv_response([campaign], file_name=f"campaign-{campaign.slug}-products.csv")

    @admin.action(description="Archive (keeps the events and the report)", permissions=["change"])
    def archive(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        count = services.archive_campaigns(list(queryset.values_list("pk", flat=True)))
        messages.success(request, f"{count} campaign(s) archived; their landing pages now redirect.")

    @admin.action(description="Export recommended product URLs (CSV)", permissions=["view"])
    def export_recommended_urls(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> HttpResponse:
        return recommended_csv_response(list(queryset.order_by("pk")), file_name="recommended-products.csv")

    def bulk_upload_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = BulkUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                result = services.create_campaigns_from_zip(
                    data=form.cleaned_data["archive"], defaults=form.campaign_defaults(), user=request.user
                )
            except FeedError as error:
                form.add_error("archive", str(error))
            else:
                messages.success(
                    request, f"Created {len(result.created)} campaigns; their creatives are being embedded."
                )
                for name, reason in result.errors[:50]:
                    messages.warning(request, f"{name}: {reason}")
                return HttpResponseRedirect(reverse("admin:campaigns_campaign_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Create campaigns from a ZIP of ad images",
            "form": form,
        }
        return TemplateResponse(request, "admin/campaigns/campaign/bulk_upload.html", context)


def _rate_cells(proportion: Proportion) -> list[str]:
    if proportion.rate is None:
        return ["", "", ""]
    return [f"{proportion.rate:.6f}", f"{proportion.low:.6f}", f"{proportion.high:.6f}"]


def _lift_cells(lift: Lift | None) -> list[str]:
    return ["", "", ""] if lift is None else [f"{lift.lift:.6f}", f"{lift.low:.6f}", f"{lift.high:.6f}"]


REPORT_COLUMNS = [
    "creative", "variant", "visitors", "impressions", "clicks",
    "ctr", "ctr_low", "ctr_high",
    "add_to_cart_rate", "add_to_cart_low", "add_to_cart_high",
    "conversion_rate", "conversion_low", "conversion_high",
    "ctr_lift", "ctr_lift_low", "ctr_lift_high",
    "add_to_cart_lift", "add_to_cart_lift_low", "add_to_cart_lift_high",
    "conversion_lift", "conversion_lift_low", "conversion_lift_high",
]  # fmt: skip


# A cell starting with one of these is a formula to spreadsheet programs: "=HYPERLINK(...)" in a product
# title from a scraped store would run when a marketer opens the export (OWASP "CSV injection").
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")


def csv_safe(value: Any) -> Any:
    """Text cells that would be read as a formula, prefixed with an apostrophe; other values unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


class SafeCsvWriter:
    """``csv.writer`` whose text cells are never formulas."""

    def __init__(self, stream: Any) -> None:
        self._writer = csv.writer(stream)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([csv_safe(cell) for cell in row])


def write_report_csv(stream: Any, report: selectors.CampaignReport) -> None:
    """One row per creative and variant; the lift of visual over control (with its 95 % interval) sits on
    the visual row, and an "All creatives" row carries the campaign-wide lift."""
    writer = SafeCsvWriter(stream)
    writer.writerow(REPORT_COLUMNS)
    lifts: dict[tuple[str, str], Lift | None] = {
        (row.creative_name, row.metric): row.lift for row in report.lifts
    }
    metrics = ("CTR", "Add-to-cart rate", "Conversion rate")
    for row in report.rows:
        lift_cells: list[str] = []
        for metric in metrics:
            lift_cells += (
                _lift_cells(lifts.get((row.creative_name, metric))) if row.variant == "visual" else [""] * 3
            )
        counts = [row.creative_name, row.variant, row.visitors, row.impressions, row.clicks]
        rates = [*_rate_cells(row.ctr), *_rate_cells(row.add_to_cart), *_rate_cells(row.conversion)]
        writer.writerow([*counts, *rates, *lift_cells])
    overall = [lift for lift in report.lifts if lift.creative_name == "All creatives"]
    if overall:
        by_metric = {lift.metric: lift for lift in overall}
        visual = [by_metric[m].visual for m in metrics]
        lift_cells = [cell for m in metrics for cell in _lift_cells(by_metric[m].lift)]
        rates = [cell for proportion in visual for cell in _rate_cells(proportion)]
        writer.writerow(["All creatives", "visual", visual[0].trials, "", "", *rates, *lift_cells])


RECOMMENDED_COLUMNS = [
    "campaign",
    "creative",
    "landing_url",
    "rank",
    "product_id",
    "title",
    "product_url",
    "score",
    "note",
]


def recommended_csv_response(campaigns: Iterable[Campaign], *, file_name: str) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{file_name}"'
    writer = SafeCsvWriter(response)
    writer.writerow(RECOMMENDED_COLUMNS)
    for row in selectors.recommended_product_rows(campaigns=list(campaigns)):
        writer.writerow([row.get(column, "") for column in RECOMMENDED_COLUMNS])
    return response


@admin.register(Creative)
class CreativeAdmin(admin.ModelAdmin):
    form = CreativeForm
    list_display = ["thumbnail", "__str__", "campaign", "embedding_status", "embedding_error", "embedded_at"]
    list_filter = ["embedding_status", "campaign__status"]
    search_fields = ["name", "slug", "campaign__name", "campaign__slug"]
    list_select_related = ["campaign"]
    raw_id_fields = ["campaign"]
    fields = [
        "campaign",
        "name",
        "slug",
        "position",
        "image",
        "image_url",
        "headline",
        "preview",
        "embedding",
    ]
    readonly_fields = ["preview", "embedding"]
    actions = ["reembed"]

    @admin.display(description="Image")
    def thumbnail(self, obj: Creative) -> str:
        return creative_preview(obj, size_px=64)

    @admin.display(description="Preview")
    def preview(self, obj: Creative) -> str:
        return creative_preview(obj, size_px=240)

    @admin.display(description="Embedding")
    def embedding(self, obj: Creative) -> str:
        return embedding_state(obj)

    def save_model(self, request: HttpRequest, obj: Creative, form: Any, change: bool) -> None:
        _save_creative_form(form, request)

    @admin.action(description="Embed again with the active encoder", permissions=["change"])
    def reembed(self, request: HttpRequest, queryset: QuerySet[Creative]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        queryset.update(embedding_status=Creative.EmbeddingStatus.PENDING, embedding_error="", space=None)
        for creative_id in ids:
            services.queue_creative_embedding(creative_id)
        self.message_user(request, f"Queued {len(ids)} creatives for embedding.")
