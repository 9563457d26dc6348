"""Photo files under content-addressed names, written without Storage.save (scraper.catalog)."""

from __future__ import annotations

import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import FileSystemStorage

from scraper.catalog import _write_content_addressed


def test_bytes_land_whole_once_and_an_existing_name_is_kept(tmp_path) -> None:
    storage = FileSystemStorage(location=tmp_path, file_permissions_mode=0o640)
    name = "products/ab/abcdef.jpg"

    assert _write_content_addressed(storage, name, b"first bytes") == name
    assert _write_content_addressed(storage, name, b"other bytes") == name  # the name says the bytes

    with storage.open(name, "rb") as stored:
        assert stored.read() == b"first bytes"
    assert oct((tmp_path / name).stat().st_mode & 0o777) == oct(0o640)
    assert [path.name for path in (tmp_path / "products" / "ab").iterdir()] == ["abcdef.jpg"]  # no leftovers


@pytest.mark.parametrize("name", ["../outside.jpg", "products/../../outside.jpg", "/etc/outside.jpg"])
def test_a_name_outside_the_storage_is_refused(tmp_path, name) -> None:
    storage = FileSystemStorage(location=tmp_path / "media")
    with pytest.raises(SuspiciousFileOperation):
        _write_content_addressed(storage, name, b"bytes")
    assert not (tmp_path / "outside.jpg").exists()
