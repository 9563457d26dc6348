"""``manage.py embed_catalog``: in-process runs with real forward passes, and --async with a real worker."""

from __future__ import annotations

import io
import time

import pytest
from django.core.management import CommandError, call_command

from recommendations.models import EmbeddingSpace, ImageEmbedding, ProductEmbedding
from shop.models import Store
from tests.factories import add_image, create_product
from tests.recommendations.embedding_helpers import ENCODER, broken_images, coloured_jpeg, store_image


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("embed_catalog", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def catalog(store, count: int) -> list:
    images = []
    for index in range(count):
        product = create_product(store=store, image=None)
        images.append(add_image(product, coloured_jpeg(index)))
    return images


@pytest.mark.django_db
def test_embeds_the_catalog_with_progress_and_a_summary_then_skips_it(store):
    images = catalog(store, 3)
    product = create_product(store=store, image=None)
    truncated, _ = broken_images()["truncated.jpg"]
    store_image(product, truncated, name="truncated-1.jpg")
    store_image(product, truncated[:-100], name="truncated-2.jpg")
    store_image(product, b"", name="empty.jpg")

    out, err = run("--batch-size", "2")

    assert "Embedding 6 images into space" in out
    assert "Embedded 3, skipped 0 unchanged, failed 3" in out
    assert "images/s" in out
    # Failures grouped by kind: the two truncated files differ only in numbers.
    assert "Failures by reason:" in out
    assert "     2 × truncated or corrupt image data" in out
    assert "     1 × empty file" in out
    assert "is the active embedding space" in out
    assert "6/6 [" in err and "img/s]" in err  # the bar: count, elapsed<remaining, rate
    space = EmbeddingSpace.objects.get()
    assert (space.encoder, space.state) == (ENCODER, "active")
    assert set(ImageEmbedding.objects.filter(status="embedded").values_list("image_id", flat=True)) == {
        image.pk for image in images
    }

    out, _ = run("--no-progress")
    assert "Embedded 0, skipped 6 unchanged, failed 0" in out
    assert ImageEmbedding.objects.count() == 6


@pytest.mark.django_db
def test_store_and_limit_select_the_images(store):
    other_store = Store.objects.create(name="Other store")
    ours = catalog(store, 3)
    catalog(other_store, 2)

    out, _ = run("--store", str(store.pk), "--limit", "2", "--no-progress")

    assert "Embedding 2 images" in out
    assert set(ImageEmbedding.objects.values_list("image_id", flat=True)) == {ours[0].pk, ours[1].pk}
    # The name that import_catalog --store took works too, and the id is said.
    out, _ = run("--store", "Other store", "--no-progress")
    assert f"Store Other store (id {other_store.pk})." in out and "Embedding 2 images" in out
    with pytest.raises(CommandError, match="No store named 'Elsewhere'. Stores: 'Test store'"):
        run("--store", "Elsewhere")


@pytest.mark.django_db
def test_weights_that_cannot_be_downloaded_leave_no_space_and_name_the_bundled_encoder(
    store, monkeypatch, tmp_path
):
    catalog(store, 1)
    # An empty weights cache and a proxy that refuses every connection: the download fails as offline.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with pytest.raises(CommandError) as refused:
        run("--encoder", "resnet18", "--weights", "DEFAULT", "--no-progress")
    message = str(refused.value)
    assert "Cannot get the pretrained weights" in message
    assert message.splitlines()[-1].startswith("Offline? The bundled encoder")
    assert "--encoder efficientnet_lite0" in message
    assert not EmbeddingSpace.objects.exists()


@pytest.mark.django_db
def test_another_encoder_fills_a_new_space_and_switches_when_complete(store):
    catalog(store, 2)
    run("--no-progress")
    first = EmbeddingSpace.objects.get()

    out, _ = run("--weights", "random", "--limit", "1", "--no-progress")

    second = EmbeddingSpace.objects.exclude(pk=first.pk).get()
    assert second.weights_id == "random-seed0"
    assert "stays in state building: 1 images are not embedded in it yet" in out
    assert EmbeddingSpace.objects.get(state="active") == first

    out, _ = run("--encoder", ENCODER, "--weights", "random", "--no-progress")

    assert "Embedded 1, skipped 1" in out
    assert EmbeddingSpace.objects.get(state="active") == second
    assert EmbeddingSpace.objects.get(pk=first.pk).state == "retired"
    assert ProductEmbedding.objects.filter(space=second).count() == 2


@pytest.mark.django_db
def test_unusable_weights_and_arguments_are_refused(store):
    with pytest.raises(CommandError, match="neither an existing file"):
        run("--weights", "/nonexistent/weights.pth")
    with pytest.raises(CommandError, match="--batch-size must be at least 1"):
        run("--batch-size", "0")
    with pytest.raises(CommandError):
        run("--encoder", "vit_giant")


@pytest.mark.django_db(transaction=True)
def test_async_queues_the_catalog_for_the_workers(celery_worker, store):
    images = catalog(store, 2)  # no space yet: nothing is embedded on save

    out, _ = run("--async")

    assert "on the embeddings queue; it is active now" in out
    deadline = time.monotonic() + 180
    while ImageEmbedding.objects.filter(status="embedded").count() < len(images):
        assert time.monotonic() < deadline, "the worker did not embed the catalog"
        time.sleep(0.2)
    assert ProductEmbedding.objects.count() == 2
