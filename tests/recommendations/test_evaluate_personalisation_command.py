"""``manage.py evaluate_personalisation`` reuses the vectors the shop already stored, with progress bars."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from recommendations import services
from recommendations.models import ImageEmbedding
from tests.factories import add_image, create_product, jpeg_bytes

pytestmark = pytest.mark.django_db

HEADER = ",".join(
    ["id", "image", "gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "year"]
    + ["usage", "productDisplayName", "md5"]
)


def test_stored_vectors_are_reused_and_progress_is_shown(store, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_CACHE_DIR", str(tmp_path / "cache"))
    images = tmp_path / "myntra" / "images"
    images.mkdir(parents=True)
    rows = [HEADER]
    photos = []
    for i in range(8):
        data = jpeg_bytes((30 * i, 200 - 20 * i, 90), 64)
        (images / f"{100 + i}.jpg").write_bytes(data)
        photos.append(data)
        kind = "Shirts" if i % 2 else "Shoes"
        rows.append(
            f"{100 + i},{100 + i}.jpg,Men,Apparel,Topwear,{kind},Blue,Fall,2011,Casual,Item {i},md5-{i}"
        )
    (tmp_path / "myntra" / "labels.csv").write_text("\n".join(rows) + "\n")
    # The shop imported and embedded half of these photos already.
    space = services.prepare_space("efficientnet_lite0", "random")
    ids = [add_image(create_product(store=store, image=None), data).pk for data in photos[:4]]
    assert not services.embed_images(ids, space=space, weights="random").failed

    out, err = io.StringIO(), io.StringIO()
    call_command(
        "evaluate_personalisation",
        "--data-dir",
        str(tmp_path),
        "--encoder",
        "efficientnet_lite0",
        "--weights",
        "random",
        "--strategies",
        "mean",
        "--judges",
        "vectors",
        "--targets",
        "3",
        "--skip-leave-last-out",
        stdout=out,
        stderr=err,
    )
    assert "4 of 8 photos have a stored vector." in out.getvalue()
    assert "Target finding: 3 hidden targets" in out.getvalue()
    assert "embedding photos" in err.getvalue() and "target finding" in err.getvalue()
    assert "3/3" in err.getvalue()  # the bar reached the end of the searches
    # The stored vectors are the ones used: the cache written for the set holds them.
    cached = np.load(next((tmp_path / "cache").rglob("*.npz")))["vectors"]
    stored = {
        digest: np.asarray(vector, dtype=np.float32)
        for digest, vector in ImageEmbedding.objects.filter(space=space).values_list("sha256", "vector")
    }
    for index, data in enumerate(photos[:4]):
        np.testing.assert_array_equal(cached[index], stored[hashlib.sha256(data).hexdigest()])


def test_another_labelled_set_is_read_through_its_column_names(db, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_CACHE_DIR", str(tmp_path / "cache"))
    photos = tmp_path / "brand" / "photos"
    photos.mkdir(parents=True)
    rows = ["image,handle,department,article_type,colour_name,md5"]
    for i in range(10):
        (photos / f"{i:09d}.jpg").write_bytes(jpeg_bytes((25 * i, 90, 200 - 15 * i), 64))
        kind = "polo" if i % 2 else "shorts"
        rows.append(f"{i:09d}.jpg,item-{i},mens,{kind},blue,digest-{i}")
    labels = tmp_path / "brand" / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    columns = [
        "--article-type-column", "article_type", "--colour-column", "colour_name",
        "--sub-category-column", "department", "--master-category-column", "department", "--id-column", "",
    ]  # fmt: skip
    common = ["--labels", str(labels), "--images", str(photos), "--weights", "random", "--no-progress"]
    out = io.StringIO()
    call_command(
        "evaluate_personalisation", *common, *columns, "--encoder", "efficientnet_lite0",
        "--strategies", "mean", "--judges", "labels", "--targets", "2", "--skip-leave-last-out", stdout=out,
    )  # fmt: skip
    assert "10 distinct photos" in out.getvalue() and "Target finding: 2 hidden targets" in out.getvalue()
    with pytest.raises(CommandError, match="has no column articleType"):
        call_command("evaluate_personalisation", *common, "--id-column", "", "--skip-targets")
