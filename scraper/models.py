"""Import jobs and their error log.

A job is one import of one source into one store: an uploaded file, a local path (the command), or a
URL. Counters move while it runs, so the admin can show progress; the error log keeps every row, page
or image that failed with the reason, and whether it was retried.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse

from lookalike.conf import model_label

STORE_MODEL = model_label("STORE_MODEL")


def import_upload_path(instance: ImportJob, filename: str) -> str:
    # An unguessable folder: uploads may be served from MEDIA_URL, and catalogs are not public.
    return f"imports/{uuid.uuid4().hex}/{filename}"


class ImportJob(models.Model):
    class Kind(models.TextChoices):
        AUTO = "auto", "Detect from the source"
        CSV = "csv", "CSV / TSV file"
        IMAGE_FOLDER = "image_folder", "Folder or ZIP of photos"
        SHOPIFY = "shopify", "Shopify store"
        SITEMAP = "sitemap", "Any store (sitemap.xml)"
        MERCHANT_FEED = "merchant_feed", "Google Merchant feed"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        PARTIAL = "partial", "Partly imported"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.SUCCEEDED, Status.PARTIAL, Status.FAILED, Status.CANCELLED)

    store = models.ForeignKey(STORE_MODEL, related_name="import_jobs", on_delete=models.CASCADE)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.AUTO)
    source_url = models.URLField(max_length=2000, blank=True)
    source_file = models.FileField(upload_to=import_upload_path, max_length=500, blank=True)
    source_path = models.CharField(
        max_length=1000, blank=True, help_text="A file or folder on the server (import_catalog command only)."
    )
    options = models.JSONField(
        default=dict, blank=True, help_text='e.g. {"collection": "shirts"} for Shopify.'
    )
    full_sync = models.BooleanField(
        default=False, help_text="Mark the store's products that the source no longer lists as out of stock."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    message = models.TextField(blank=True, help_text="What stopped or limited the import, if anything.")
    source_complete = models.BooleanField(
        default=False,
        help_text="The whole source was read (a full sync only marks products out of stock then).",
    )
    cancel_requested = models.BooleanField(default=False)
    warnings = models.JSONField(
        default=list,
        blank=True,
        help_text="What the import guessed or repaired (a currency assumed, a broken feed fixed).",
    )

    seen = models.PositiveIntegerField(default=0, help_text="Product records read from the source.")
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0, help_text="Rows and pages that could not be imported.")
    skipped = models.PositiveIntegerField(default=0, help_text="Pages without product data.")
    marked_out_of_stock = models.PositiveIntegerField(default=0)
    images_queued = models.PositiveIntegerField(default=0)
    images_downloaded = models.PositiveIntegerField(default=0)
    images_reused = models.PositiveIntegerField(
        default=0, help_text="Stored without a download: the same URL or the same file was stored before."
    )
    images_failed = models.PositiveIntegerField(default=0)

    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, related_name="+", on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # When the source was read to the end (or stopped); images may still be downloading after it.
    walk_finished_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last time the counters moved.")

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["store", "-created_at"], name="importjob_store_recent")]

    def __str__(self) -> str:
        return f"Import #{self.pk} into {self.store} ({self.get_status_display().lower()})"

    def get_absolute_url(self) -> str:
        return reverse("admin:scraper_importjob_change", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def source_label(self) -> str:
        if self.source_url:
            return self.source_url
        if self.source_path:
            return self.source_path
        return (self.source_file.name or "").rsplit("/", 1)[-1] if self.source_file else ""

    @property
    def images_done(self) -> int:
        return self.images_downloaded + self.images_reused + self.images_failed

    @property
    def written(self) -> int:
        return self.created + self.updated + self.unchanged


class ImportRowError(models.Model):
    """One thing an import could not do: a row or record, a page or feed, or an image."""

    class Stage(models.TextChoices):
        ROW = "row", "Record"
        FETCH = "fetch", "Page or feed"
        IMAGE = "image", "Image"

    job = models.ForeignKey(ImportJob, related_name="errors", on_delete=models.CASCADE)
    stage = models.CharField(max_length=8, choices=Stage.choices, default=Stage.ROW)
    source_ref = models.CharField(max_length=2000, help_text='Where: "row 12", a URL, a path in an archive.')
    external_id = models.CharField(max_length=255, blank=True)
    reason = models.TextField()
    payload = models.TextField(blank=True, help_text="The start of the record as the source wrote it.")
    # What "retry failed rows" fetches again; empty when only a corrected file can help.
    retry_url = models.URLField(max_length=2000, blank=True)
    image_id = models.BigIntegerField(null=True, blank=True, help_text="The catalog image that failed.")
    retryable = models.BooleanField(default=False, help_text="Trying again later may succeed.")
    retried = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        indexes = [models.Index(fields=["job", "retried"], name="importrowerror_job_retried")]

    def __str__(self) -> str:
        return f"{self.source_ref}: {self.reason}"
