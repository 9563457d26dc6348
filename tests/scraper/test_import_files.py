"""Imports from files: the demo catalog (CSV + photos side by side), CSV and ZIP uploads in the admin."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command

from scraper.models import ImportJob
from shop.demo_catalog import generate_demo_catalog, write_demo_catalog
from shop.models import Product, ProductImage, Store
from tests.factories import stored_bytes


@pytest.mark.django_db
def test_demo_catalog_csv_with_photos_beside_it_imports_with_the_command(tmp_path: Path) -> None:
    demo = generate_demo_catalog(n_products=12, image_px=64)
    csv_path = write_demo_catalog(tmp_path, demo)

    call_command("import_catalog", str(csv_path), "--store", "Demo", "--sync", "--no-progress")

    job = ImportJob.objects.get()
    assert job.status == ImportJob.Status.SUCCEEDED, (
        job.message,
        list(job.errors.values_list("reason", flat=True)),
    )
    store = Store.objects.get(name="Demo")
    assert store.products.count() == 12
    for record in demo:
        product = Product.objects.get(store=store, external_id=record.external_id)
        assert product.title == record.title
        assert product.price == record.price
        assert product.in_stock == record.in_stock
        images = list(product.images.order_by("position"))
        assert [image.status for image in images] == [ProductImage.Status.STORED] * len(record.images)
        assert [stored_bytes(image.image) for image in images] == [image.draw() for image in record.images]


@pytest.mark.django_db
def test_a_row_the_database_refuses_costs_only_that_row(tmp_path: Path) -> None:
    too_long = "Very " * 60  # a category name over the catalog's 200 characters
    csv_path = tmp_path / "catalog.csv"
    rows = ["id,title,category", "A,First,Tops", f"B,Second,{too_long}", "C,Third,Tops > Shirts"]
    csv_path.write_text("\n".join(rows) + "\n")

    call_command("import_catalog", str(csv_path), "--store", "Refusals", "--sync", "--no-progress")

    job = ImportJob.objects.get()
    assert (job.status, job.created, job.failed) == (ImportJob.Status.PARTIAL, 2, 1)
    error = job.errors.get()
    assert (error.source_ref, error.external_id) == ("row 3", "B")
    assert error.reason.startswith("not saved:")
    assert sorted(Product.objects.values_list("external_id", "category__name")) == [
        ("A", "Tops"),
        ("C", "Shirts"),
    ]


@pytest.mark.django_db
def test_a_folder_and_a_zip_of_photos_import_with_the_command(tmp_path: Path) -> None:
    import zipfile

    from tests.factories import jpeg_bytes

    folder = tmp_path / "photos"
    (folder / "Kitchen" / "Mugs").mkdir(parents=True)
    (folder / "Kitchen" / "Mugs" / "red-mug.jpg").write_bytes(jpeg_bytes((200, 20, 20)))
    (folder / "blue-vase.png").write_bytes(jpeg_bytes((20, 20, 200)))  # a JPEG named .png: sniffed, fine
    call_command("import_catalog", str(folder), "--store", "Photos", "--sync", "--no-progress")

    mug = Product.objects.get(external_id="Kitchen/Mugs/red-mug.jpg")
    assert (mug.title, mug.category.name, mug.images.get().status) == ("Red mug", "Mugs", "stored")
    assert ImportJob.objects.get().kind == "image_folder"

    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(folder / "Kitchen" / "Mugs" / "red-mug.jpg", "Kitchen/Mugs/red-mug.jpg")
        zipped.writestr("Garden/green-pot.jpg", jpeg_bytes((20, 160, 20)))
    call_command("import_catalog", str(archive), "--store", "Photos", "--sync", "--no-progress")

    job = ImportJob.objects.latest("pk")
    assert (job.kind, job.created, job.unchanged, job.images_downloaded) == ("image_folder", 1, 1, 1)
    assert Product.objects.filter(store__name="Photos").count() == 3
