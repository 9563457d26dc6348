import csv
import hashlib
import io
import itertools
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shop.demo_catalog import (
    CATEGORY_PATHS,
    COLOURS,
    CSV_COLUMNS,
    PATTERNS,
    DemoProduct,
    generate_demo_catalog,
    main,
    write_demo_catalog,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SMALL_PX = 96  # drawing cost grows with the square of the size; most checks do not need big photos


@pytest.fixture(scope="module")
def small_catalog() -> list[DemoProduct]:
    return generate_demo_catalog(n_products=48, seed=11, image_px=SMALL_PX)


def _image_hashes(products: list[DemoProduct]) -> list[str]:
    return [hashlib.sha256(image.draw()).hexdigest() for product in products for image in product.images]


def _mean_rgb(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=float).reshape(-1, 3).mean(axis=0)


def test_default_catalog_has_the_promised_products_spread_over_all_categories():
    products = generate_demo_catalog()

    assert len(products) == 360
    assert len({p.external_id for p in products}) == 360
    assert all(p.external_id.startswith("demo-") for p in products)
    per_category = defaultdict(int)
    for product in products:
        per_category[tuple(product.category_path)] += 1
    assert set(per_category) == set(CATEGORY_PATHS)
    assert len(CATEGORY_PATHS) >= 6
    assert set(per_category.values()) == {360 // len(CATEGORY_PATHS)}


@pytest.mark.parametrize("n_products", [1, 7, 50])
def test_any_product_count_is_honoured(n_products):
    products = generate_demo_catalog(n_products=n_products, image_px=SMALL_PX)

    assert len(products) == n_products
    assert len({p.external_id for p in products}) == n_products


def test_records_are_complete_and_plausible(small_catalog):
    for product in small_catalog:
        colour, pattern = product.attributes["colour"], product.attributes["pattern"]
        assert set(product.attributes) == {"colour", "pattern", "shape"}
        assert colour in COLOURS and pattern in PATTERNS
        assert product.title.lower().startswith(colour)
        assert product.description and product.brand and product.url.startswith("https://")
        assert product.currency == "EUR"
        assert isinstance(product.price, Decimal)
        assert product.price.as_tuple().exponent == -2
        assert Decimal("5") < product.price < Decimal("200")


def test_every_product_has_one_to_three_photos_that_decode_at_the_requested_size(small_catalog):
    counts = [len(p.images) for p in small_catalog]
    assert min(counts) >= 1 and max(counts) <= 3
    assert max(counts) > 1, "some products need other photos of the same object"
    filenames = [image.filename for p in small_catalog for image in p.images]
    assert len(set(filenames)) == len(filenames)
    for product in small_catalog:
        for image in product.images:
            with Image.open(io.BytesIO(image.draw())) as photo:
                assert photo.format == "JPEG"
                assert photo.size == (SMALL_PX, SMALL_PX)
                assert photo.mode == "RGB"


def test_default_photo_size_is_384_px():
    product = generate_demo_catalog(n_products=1)[0]

    with Image.open(io.BytesIO(product.images[0].draw())) as photo:
        assert photo.size == (384, 384)


def test_extra_photos_show_the_same_object_from_another_angle(small_catalog):
    with_extras = [p for p in small_catalog if len(p.images) > 1]

    for product in with_extras:
        first, *others = product.images
        for other in others:
            assert other.spec.design == first.spec.design and other.spec.colour == first.spec.colour
            assert other.spec.view != first.spec.view
            assert other.draw() != first.draw()


def test_same_seed_gives_byte_identical_photos():
    first = generate_demo_catalog(n_products=40, seed=5, image_px=SMALL_PX)
    second = generate_demo_catalog(n_products=40, seed=5, image_px=SMALL_PX)

    assert [p.title for p in first] == [p.title for p in second]
    assert [p.price for p in first] == [p.price for p in second]
    assert _image_hashes(first) == _image_hashes(second)


def test_different_seeds_give_different_catalogs():
    first = generate_demo_catalog(n_products=40, seed=5, image_px=SMALL_PX)
    second = generate_demo_catalog(n_products=40, seed=6, image_px=SMALL_PX)

    assert [p.title for p in first] != [p.title for p in second]
    assert set(_image_hashes(first)).isdisjoint(_image_hashes(second))


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_most_but_not_all_products_are_in_stock(seed):
    products = generate_demo_catalog(seed=seed)

    in_stock_share = sum(p.in_stock for p in products) / len(products)
    assert 0.75 <= in_stock_share <= 0.95


def test_colourways_share_everything_but_the_colour(small_catalog):
    by_design = defaultdict(list)
    for product in small_catalog:
        by_design[product.design_id].append(product)
    colourways = [group for group in by_design.values() if len(group) > 1]

    assert colourways, "the demo needs near-duplicate products in another colour"
    for group in colourways:
        assert len({p.attributes["colour"] for p in group}) == len(group)
        assert len({(p.attributes["shape"], p.attributes["pattern"], p.price) for p in group}) == 1


def test_products_with_different_colour_names_look_different_in_that_direction(small_catalog):
    by_design = defaultdict(list)
    for product in small_catalog:
        by_design[product.design_id].append(product)
    pairs = [pair for group in by_design.values() for pair in itertools.combinations(group, 2)]
    assert pairs

    for a, b in pairs:
        seen = _mean_rgb(a.images[0].draw()) - _mean_rgb(b.images[0].draw())
        named = np.subtract(COLOURS[a.attributes["colour"]], COLOURS[b.attributes["colour"]])
        cosine = seen @ named / (np.linalg.norm(seen) * np.linalg.norm(named))
        # Colourways share shape, pattern and backdrop, so the mean colour moves only with the colour name.
        assert np.linalg.norm(seen) > 3, (a.title, b.title)
        assert cosine > 0.9, (a.title, b.title)


def test_solid_products_show_their_named_colour():
    products = generate_demo_catalog(n_products=160, seed=2, image_px=SMALL_PX)
    names = list(COLOURS)
    palette = np.array([COLOURS[name] for name in names], dtype=float)
    # A poster's frame outweighs its motif, so posters are left out here.
    solid = [p for p in products if p.attributes["pattern"] == "solid" and p.category_path[0] != "Art"]
    assert len(solid) >= 10

    for product in solid:
        with Image.open(io.BytesIO(product.images[0].draw())) as photo:
            pixels = np.asarray(photo.convert("RGB"), dtype=float).reshape(-1, 3)
        backdrop = pixels[0]
        foreground = pixels[np.linalg.norm(pixels - backdrop, axis=1) > 60]
        typical = np.median(foreground, axis=0)
        nearest = names[int(np.argmin(np.linalg.norm(palette - typical, axis=1)))]
        assert nearest == product.attributes["colour"], (product.title, typical)


def test_write_demo_catalog_writes_a_csv_and_photos_that_read_back(tmp_path, small_catalog):
    csv_path = write_demo_catalog(tmp_path / "demo", small_catalog)

    with csv_path.open(newline="", encoding="utf-8") as csv_file:
        reader = csv.DictReader(csv_file)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        rows = list(reader)
    assert len(rows) == len(small_catalog)
    for row, product in zip(rows, small_catalog, strict=True):
        assert row["external_id"] == product.external_id
        assert row["title"] == product.title
        assert Decimal(row["price"]) == product.price
        assert row["in_stock"] == ("true" if product.in_stock else "false")
        assert row["category"].split(" > ") == product.category_path
        image_names = row["image_urls"].split("|")
        assert len(image_names) == len(product.images)
        for name in image_names:
            image_path = csv_path.parent / name
            assert image_path.is_file()
            assert image_path.read_bytes() == product.images[image_names.index(name)].draw()


def test_written_catalog_imports_through_the_csv_feed_parser(tmp_path):
    from scraper.parsers.csv_feed import parse_csv
    from scraper.parsers.records import ScrapedProduct

    products = generate_demo_catalog(n_products=6, image_px=64)
    csv_path = write_demo_catalog(tmp_path, products)

    base_url = "http://127.0.0.1:8000/demo/"  # where a user would serve the folder
    parsed = list(parse_csv(csv_path.read_bytes(), base_url=base_url))
    assert all(isinstance(record, ScrapedProduct) for record in parsed), parsed
    for record, product in zip(parsed, products, strict=True):
        assert (record.external_id, record.title, record.price) == (
            product.external_id,
            product.title,
            product.price,
        )
        assert record.in_stock == product.in_stock
        assert record.category_path == product.category_path
        assert record.image_urls == [base_url + image.filename for image in product.images]
        assert {k: record.attributes[k] for k in product.attributes} == product.attributes


def test_command_line_writes_a_catalog(tmp_path, capsys):
    main([str(tmp_path), "--n-products", "3", "--image-px", "64"])

    assert capsys.readouterr().out.strip() == str(tmp_path / "catalog.csv")
    with (tmp_path / "catalog.csv").open(newline="", encoding="utf-8") as csv_file:
        assert len(list(csv.DictReader(csv_file))) == 3


def test_module_does_not_import_django():
    code = "import sys, shop.demo_catalog; sys.exit('django' in sys.modules)"

    assert subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=False).returncode == 0
