"""Import admin: the "Import catalog" form, live progress, the error log, retry and cancel.

Progress works without JavaScript (the job page reloads itself every few seconds while the job runs);
with JavaScript a small script fetches ``<job>/status/?format=json`` instead and reloads once at the end.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from scraper.forms import ImportCatalogForm
from scraper.models import ImportJob, ImportRowError
from scraper.selectors import preview_import
from scraper.services import request_cancel, start_import

INLINE_ERROR_ROWS = 200
PREVIEW_PRODUCTS = 50
PREVIEW_TIME_BUDGET_S = 20.0  # the preview runs in the web request
REFRESH_S = 3


def status_payload(job: ImportJob) -> dict[str, Any]:
    return {
        "id": job.pk,
        "status": job.status,
        "status_display": job.get_status_display(),
        "finished": job.is_finished,
        "message": job.message,
        "warnings": job.warnings,
        "kind": job.get_kind_display(),
        **{name: getattr(job, name) for name in COUNTER_LABELS},
    }


COUNTER_LABELS = {
    "seen": "Records read",
    "created": "Created",
    "updated": "Updated",
    "unchanged": "Unchanged",
    "failed": "Failed rows and pages",
    "skipped": "Pages without products",
    "marked_out_of_stock": "Marked out of stock",
    "images_queued": "Images to store",
    "images_downloaded": "Images downloaded",
    "images_reused": "Images reused",
    "images_failed": "Images failed",
}


class _FirstRowsFormSet(BaseInlineFormSet):
    """Only the first rows of a long error log; the full log is one click away (the errors list)."""

    def get_queryset(self) -> QuerySet:
        return super().get_queryset()[:INLINE_ERROR_ROWS]


class ImportRowErrorInline(admin.TabularInline):
    model = ImportRowError
    formset = _FirstRowsFormSet
    fields = ["stage", "source_ref", "external_id", "reason", "payload", "retried"]
    readonly_fields = ["stage", "source_ref", "external_id", "reason", "payload", "retried"]
    extra = 0
    max_num = 0
    can_delete = False
    verbose_name = "error"
    verbose_name_plural = f"Error log (first {INLINE_ERROR_ROWS})"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ["__str__", "kind", "source", "status", "progress", "started_by", "created_at"]
    list_filter = ["status", "kind", "full_sync"]
    list_select_related = ["store", "started_by"]
    search_fields = ["source_url", "source_path", "source_file"]
    date_hierarchy = "created_at"
    inlines = [ImportRowErrorInline]
    actions = ["retry_failed_rows", "cancel_jobs"]
    change_form_template = "admin/scraper/importjob/change_form.html"
    change_list_template = "admin/scraper/importjob/change_list.html"
    fieldsets = [
        (
            None,
            {"fields": ["store", "kind", "source_url", "source_file", "source_path", "options", "full_sync"]},
        ),
        ("When", {"fields": ["started_by", "created_at", "started_at", "walk_finished_at", "finished_at"]}),
    ]

    # Jobs are made by the import form and changed only by the importer: the job page is read-only.
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [str(field) for fieldset in self.fieldsets for field in fieldset[1]["fields"]]

    @admin.display(description="Source")
    def source(self, job: ImportJob) -> str:
        label = job.source_label
        return label if len(label) <= 60 else "…" + label[-59:]

    @admin.display(description="Progress")
    def progress(self, job: ImportJob) -> str:
        text = f"{job.created:,} new, {job.updated:,} updated, {job.unchanged:,} unchanged"
        if job.failed or job.images_failed:
            return format_html(
                "{}; <strong>{} failed, {} images failed</strong>", text, job.failed, job.images_failed
            )
        return text

    # --- URLs: the import form, the status fragment, the buttons

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/status/", wrap(self.status_view), name="scraper_importjob_status"),
            path("<int:pk>/cancel/", wrap(self.cancel_view), name="scraper_importjob_cancel"),
            path("<int:pk>/retry/", wrap(self.retry_view), name="scraper_importjob_retry"),
            *super().get_urls(),
        ]

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        """The "Import catalog" form (``?store=<id>`` chooses the store)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        preview = None
        if request.method == "POST":
            form = ImportCatalogForm(request.POST, request.FILES)
            if form.is_valid() and "_preview" in request.POST:
                preview = self._preview(form)
            elif form.is_valid():
                data = form.cleaned_data
                with transaction.atomic():
                    job = start_import(
                        store=data["store"],
                        kind=data["kind"],
                        source_url=data["source_url"] or "",
                        source_file=data["source_file"],
                        full_sync=data["full_sync"],
                        options=form.import_options(),
                        started_by=request.user,
                    )
                messages.success(request, f"Import #{job.pk} is queued; this page shows its progress.")
                return HttpResponseRedirect(reverse("admin:scraper_importjob_change", args=[job.pk]))
        else:
            form = ImportCatalogForm(initial={"store": request.GET.get("store")})
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import catalog",
            "form": form,
            "preview": preview,
            "preview_limit": PREVIEW_PRODUCTS,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/scraper/importjob/import_form.html", context)

    def _preview(self, form: ImportCatalogForm) -> dict[str, Any]:
        """What the form's import would write (the first ``PREVIEW_PRODUCTS`` products): nothing is
        saved, no photo is downloaded."""
        data = form.cleaned_data
        job = ImportJob(
            store=data["store"],
            kind=data["kind"],
            source_url=data["source_url"] or "",
            options=form.import_options(),
        )
        if data["source_file"] is not None:
            job.source_file = data["source_file"]  # read from the upload; never saved
        return preview_import(job, max_products=PREVIEW_PRODUCTS, time_budget_s=PREVIEW_TIME_BUDGET_S)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        job = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if job is not None:
            context.update(
                job=job,
                status_html=self._status_html(job),
                refresh_s=REFRESH_S,
                can_act=self.has_add_permission(request),
                retryable_errors=job.errors.filter(retried=False)
                .exclude(retry_url="", image_id__isnull=True)
                .count(),
                error_count=job.errors.count(),
            )
        return super().change_view(request, object_id, form_url, extra_context=context)

    def status_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        job = get_object_or_404(ImportJob.objects.select_related("store"), pk=pk)
        if request.GET.get("format") == "json":
            return JsonResponse(status_payload(job))
        return HttpResponse(self._status_html(job))

    def _status_html(self, job: ImportJob) -> str:
        counters = [(name, label, getattr(job, name)) for name, label in COUNTER_LABELS.items()]
        return render_to_string("admin/scraper/importjob/_status.html", {"job": job, "counters": counters})

    @staticmethod
    def _post_only(request: HttpRequest) -> None:
        if request.method != "POST":
            raise PermissionDenied

    def cancel_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        self._post_only(request)
        if not self.has_add_permission(request):
            raise PermissionDenied
        job = request_cancel(get_object_or_404(ImportJob, pk=pk))
        messages.info(request, "Cancelled." if job.is_finished else "Cancelling after the current batch.")
        return HttpResponseRedirect(reverse("admin:scraper_importjob_change", args=[pk]))

    def retry_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        self._post_only(request)
        if not self.has_add_permission(request):
            raise PermissionDenied
        queued = self._queue_retries(request, ImportJob.objects.filter(pk=pk))
        if not queued:
            messages.warning(
                request, "Nothing to retry: the job is running, or no failure can be fetched again."
            )
        return HttpResponseRedirect(reverse("admin:scraper_importjob_change", args=[pk]))

    # --- actions

    @admin.action(description="Retry failed rows", permissions=["add"])
    def retry_failed_rows(self, request: HttpRequest, queryset: QuerySet) -> None:
        queued = self._queue_retries(request, queryset)
        messages.info(request, f"Retrying the failures of {queued} job(s).")

    @admin.action(description="Cancel", permissions=["add"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        running = [job for job in queryset if not job.is_finished]
        for job in running:
            request_cancel(job)
        messages.info(request, f"Cancelling {len(running)} job(s).")

    def _queue_retries(self, request: HttpRequest, queryset: QuerySet) -> int:
        from scraper.tasks import retry_failed_rows_task

        queued = 0
        for job in queryset:
            has_retryable = (
                job.errors.filter(retried=False).exclude(retry_url="", image_id__isnull=True).exists()
            )
            if job.is_finished and has_retryable:
                job_id = job.pk
                transaction.on_commit(partial(retry_failed_rows_task.delay, job_id))
                queued += 1
        return queued


@admin.register(ImportRowError)
class ImportRowErrorAdmin(admin.ModelAdmin):
    """The whole error log, searchable; the job page shows its first rows."""

    list_display = ["job", "stage", "source_ref", "external_id", "reason", "retried", "created_at"]
    list_filter = ["stage", "retried", "retryable"]
    list_select_related = ["job__store"]
    search_fields = ["source_ref", "external_id", "reason"]
    raw_id_fields = ["job"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
