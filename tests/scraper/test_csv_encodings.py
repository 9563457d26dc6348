"""Text that is not UTF-8: Japanese, Chinese or Korean encodings are recognised from the content (CSV
feeds and product pages without a declared charset), and a CSV title that cannot be read is a row error
rather than mojibake over a good title."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import call_command

from scraper.models import ImportJob
from scraper.parsers import RowError, parse_csv
from shop.models import Product

JAPANESE = "id,title,price\nJ-1,ワンピース 赤,1200\nJ-2,メンズ シャツ 青,3000\n"


def titles(records) -> dict[str, str]:
    return {record.external_id: record.title for record in records if not isinstance(record, RowError)}


@pytest.mark.parametrize("encoding", ["shift_jis", "euc_jp"])
def test_japanese_csv_is_read_in_its_own_encoding_with_a_note(encoding):
    records = list(parse_csv(JAPANESE.encode(encoding)))

    assert titles(records) == {"J-1": "ワンピース 赤", "J-2": "メンズ シャツ 青"}
    note = records[0]
    assert isinstance(note, RowError) and note.source_ref == "file" and "not valid UTF-8" in note.reason


def test_a_title_with_unreadable_bytes_is_a_row_error():
    # 0x81 and 0x8d are undefined in Windows-1252: the title cannot be known.
    data = b"id,title\nA-1,Caf\xe9 cr\xe8me\nA-2,Bad \x81\x8d title\n"
    records = list(parse_csv(data))

    assert titles(records) == {"A-1": "Café crème"}
    [error] = [r for r in records if isinstance(r, RowError) and r.source_ref == "row 3"]
    assert error.external_id == "A-2" and "could not be read as cp1252" in error.reason


@pytest.mark.django_db
def test_a_shift_jis_import_does_not_overwrite_good_titles_with_mojibake(tmp_path: Path):
    path = tmp_path / "catalog.csv"
    path.write_text(JAPANESE, encoding="utf-8")
    call_command("import_catalog", str(path), "--store", "Tokyo", "--sync", "--no-progress")
    path.write_bytes(JAPANESE.replace("1200", "1100").encode("shift_jis"))

    call_command("import_catalog", str(path), "--store", "Tokyo", "--sync", "--no-progress")

    assert ImportJob.objects.count() == 2
    assert dict(Product.objects.values_list("external_id", "title")) == {
        "J-1": "ワンピース 赤",
        "J-2": "メンズ シャツ 青",
    }
    assert Product.objects.get(external_id="J-1").price == 1100


def test_a_product_page_in_shift_jis_without_a_declared_charset_is_read_as_such():
    from scraper.parsers import parse_product_page

    html = (
        "<html><head><title>ワンピース 赤</title>"
        '<script type="application/ld+json">{"@type": "Product", "name": "ワンピース 赤", "sku": "J-1",'
        ' "offers": {"price": "1200", "priceCurrency": "JPY"}}</script></head><body></body></html>'
    )

    product = parse_product_page(html.encode("shift_jis"), "https://shop.example.jp/p/1")

    assert not isinstance(product, RowError)
    assert product.title == "ワンピース 赤"
