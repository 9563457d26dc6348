"""The admin side of imports, through the Django test client as a staff user: the "Import catalog" form
(CSV and ZIP uploads, URL checks), the job page with live counters and its error log, cancel and retry."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from scraper.models import ImportJob, ImportRowError
from scraper.services import run_import
from shop.models import Product, Store
from tests.factories import jpeg_bytes, stored_bytes

ADD_URL = "/admin/scraper/importjob/add/"


@pytest.fixture
def shop(db) -> Store:
    return Store.objects.create(name="Admin store", currency="GBP", base_url="https://admin-store.example/")


def post_import(client, shop: Store, *, on_commit, **fields) -> ImportJob:
    with on_commit(execute=False) as callbacks:
        response = client.post(ADD_URL, {"store": shop.pk, "kind": "auto", **fields})
    assert response.status_code == 302, response.content.decode()[:2000]
    job = ImportJob.objects.latest("pk")
    assert response["Location"] == reverse("admin:scraper_importjob_change", args=[job.pk])
    assert len(callbacks) == 1  # the import task is sent once the job is committed
    return job


def test_the_form_preselects_the_store(admin_client, shop: Store) -> None:
    response = admin_client.get(f"{ADD_URL}?store={shop.pk}")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Import catalog" in page
    assert f'<option value="{shop.pk}" selected>Admin store</option>' in page


def test_csv_upload_imports_and_the_job_page_shows_counters_and_the_error_log(
    admin_client, admin_user, shop: Store, django_capture_on_commit_callbacks
) -> None:
    csv = (
        "sku,name,price,category\n"
        "S-1,Linen shirt,49.00,Men > Shirts\n"
        "S-2,,12.00,Men > Shirts\n"  # no title: logged, the rest imports
        "S-3,Wool scarf,£19.50,Accessories\n"
    ).encode()
    upload = SimpleUploadedFile("catalog.csv", csv, content_type="text/csv")
    job = post_import(admin_client, shop, on_commit=django_capture_on_commit_callbacks, source_file=upload)
    assert (job.status, job.started_by) == (ImportJob.Status.QUEUED, admin_user)

    queued_page = admin_client.get(reverse("admin:scraper_importjob_change", args=[job.pk])).content.decode()
    assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in queued_page
    assert "scraper/import_status.js" in queued_page
    assert "Cancel import" in queued_page

    job = run_import(job, images="inline")

    assert (job.kind, job.status, job.created, job.failed) == ("csv", ImportJob.Status.PARTIAL, 2, 1)
    assert Product.objects.get(external_id="S-3").price == 19.5
    assert Product.objects.get(external_id="S-1").currency == "GBP"  # the store's, the file has none
    page = admin_client.get(reverse("admin:scraper_importjob_change", args=[job.pk])).content.decode()
    assert "Partly imported" in page and "http-equiv" not in page
    assert "row 3" in page and "missing title" in page and "S-2,,12.00,Men &gt; Shirts" in page
    status = admin_client.get(reverse("admin:scraper_importjob_status", args=[job.pk]), {"format": "json"})
    assert json.loads(status.content) | {"message": ""} == {
        "id": job.pk, "status": "partial", "status_display": "Partly imported", "finished": True,
        "message": "", "kind": "CSV / TSV file", "seen": 3, "created": 2, "updated": 0, "unchanged": 0,
        "failed": 1, "skipped": 0, "marked_out_of_stock": 0, "images_queued": 0, "images_downloaded": 0,
        "images_reused": 0, "images_failed": 0, "warnings": [job.warnings[0]],
    }  # fmt: skip
    assert "(GBP) was assumed" in job.warnings[0]  # the file's prices have no currency
    fragment = admin_client.get(reverse("admin:scraper_importjob_status", args=[job.pk])).content.decode()
    assert 'id="import-status"' in fragment and 'data-finished="1"' in fragment
    errors = admin_client.get(reverse("admin:scraper_importrowerror_changelist"), {"job__exact": job.pk})
    assert errors.status_code == 200 and "missing title" in errors.content.decode()


def build_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_zip_of_photos_imports_one_product_per_photo_safely(
    admin_client, shop: Store, django_capture_on_commit_callbacks
) -> None:
    # Colours no other test uses: stored files are content-addressed and shared by the whole test run.
    red, blue = jpeg_bytes((211, 47, 23)), jpeg_bytes((23, 47, 211))
    data = build_zip(
        {
            "catalog/Women/Dresses/red-wrap_dress.jpg": red,
            "catalog/Women/Dresses/blue-dress.jpg": blue,
            "catalog/Men/blue-dress-copy.jpg": blue,  # the same photo: its file is stored once
            "../escape.jpg": red,
            "catalog/notes.txt": b"not a photo",
            "__MACOSX/catalog/._red-wrap_dress.jpg": b"resource fork",
        }
    )
    upload = SimpleUploadedFile("photos.zip", data, content_type="application/zip")
    job = post_import(admin_client, shop, on_commit=django_capture_on_commit_callbacks, source_file=upload)

    job = run_import(job, images="inline")

    assert (job.kind, job.created, job.failed) == ("image_folder", 3, 2)
    assert (job.images_downloaded, job.images_reused) == (2, 1)
    dress = Product.objects.get(external_id="catalog/Women/Dresses/red-wrap_dress.jpg")
    assert dress.title == "Red wrap dress"
    assert [dress.category.parent.name, dress.category.name] == ["Women", "Dresses"]
    image = dress.images.get()
    assert (image.status, image.width, stored_bytes(image.image)) == ("stored", 64, red)
    reasons = dict(ImportRowError.objects.filter(job=job).values_list("source_ref", "reason"))
    assert reasons["../escape.jpg"] == "path with '..' refused"
    assert reasons["catalog/notes.txt"].startswith("not an image")
    copies = Product.objects.filter(external_id__contains="blue-dress")
    assert len({product.images.get().image.name for product in copies}) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "Upload a file or give a URL"),
        ({"source_url": "http://10.0.0.1/products.json"}, "10.0.0.1 is a private address"),
        ({"source_url": "http://169.254.169.254/latest/"}, "link-local"),
        ({"source_url": "https://shop.example/", "kind": "image_folder"}, "uploaded ZIP"),
    ],
)
def test_the_form_refuses_what_cannot_be_imported(
    admin_client, shop: Store, fields: dict, message: str
) -> None:
    response = admin_client.post(ADD_URL, {"store": shop.pk, "kind": "auto", **fields})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ImportJob.objects.exists()


def test_a_shopify_kind_needs_a_url(admin_client, shop: Store) -> None:
    upload = SimpleUploadedFile("products.json", b'{"products": []}', content_type="application/json")
    response = admin_client.post(ADD_URL, {"store": shop.pk, "kind": "shopify", "source_file": upload})
    assert "imported from its URL" in response.content.decode()


def test_cancel_button_and_retry_action(
    admin_client, shop: Store, django_capture_on_commit_callbacks
) -> None:
    queued = ImportJob.objects.create(store=shop, kind="csv", source_url="https://admin-store.example/a.csv")
    response = admin_client.post(reverse("admin:scraper_importjob_cancel", args=[queued.pk]))
    assert response.status_code == 302
    queued.refresh_from_db()
    assert (queued.status, queued.cancel_requested) == (ImportJob.Status.CANCELLED, True)
    assert admin_client.get(reverse("admin:scraper_importjob_cancel", args=[queued.pk])).status_code == 403

    finished = ImportJob.objects.create(store=shop, kind="csv", status=ImportJob.Status.PARTIAL)
    finished.errors.create(stage="image", source_ref="https://cdn.example/a.jpg", reason="HTTP 503",
                           retry_url="https://cdn.example/a.jpg", image_id=1)  # fmt: skip
    finished.errors.create(stage="row", source_ref="row 2", reason="missing title")  # only a new file helps
    page = admin_client.get(reverse("admin:scraper_importjob_change", args=[finished.pk])).content.decode()
    assert "Retry failed rows (1)" in page

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(
            reverse("admin:scraper_importjob_changelist"),
            {"action": "retry_failed_rows", "_selected_action": [finished.pk, queued.pk]},
        )
    assert response.status_code == 302
    assert len(callbacks) == 1  # the cancelled job has nothing to retry


def test_the_job_page_is_read_only(admin_client, shop: Store) -> None:
    job = ImportJob.objects.create(store=shop, kind="csv", source_url="https://admin-store.example/a.csv")
    page = admin_client.get(reverse("admin:scraper_importjob_change", args=[job.pk])).content.decode()
    assert 'name="_save"' not in page
    response = admin_client.post(
        reverse("admin:scraper_importjob_change", args=[job.pk]), {"kind": "shopify"}
    )
    assert response.status_code == 403
