"""A ZIP holding a product CSV/TSV and its photos: image cells are paths inside the archive.

What a store admin has at hand is often a spreadsheet and a folder of photos (``15970.jpg``). Zipped
together they import in one upload: the archive's one CSV/TSV file (at any depth) is read as a
catalog CSV, and an image cell ``15970.jpg`` or ``photos/15970.jpg`` is the archive entry of that
path, relative to the CSV's folder (or to the archive's root). The archive gets the same checks as
a ZIP of photos: file count and declared size before anything is read, each entry capped while it
expands, no absolute paths, ``..``, links or encrypted entries, pixel bombs refused from the header.
A photo that cannot be read is that photo's failure; its product is still imported.
"""

from __future__ import annotations

import io
import stat
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import BinaryIO

from .csv_feed import parse_csv
from .image_folder import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_FILES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_TOTAL_BYTES,
    ImageRejected,
    _is_ignored,
    _read_limited,
    _safe_relative_path,
    _TooLarge,
    inspect_image,
)
from .records import FeedError, LocalImage, ParsedRecord

CATALOG_SUFFIXES = (".csv", ".tsv")


def open_zip(data: bytes | BinaryIO) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise FeedError(f"not a readable ZIP archive: {error}") from None


def catalog_entry(archive: zipfile.ZipFile) -> zipfile.ZipInfo | None:
    """The archive's catalog file, when it holds exactly one CSV/TSV (``None``: a ZIP of photos).
    Raises ``FeedError`` when it holds several: which one is the catalog is not for us to guess."""
    found = [
        info
        for info in archive.infolist()
        if not info.is_dir()
        and not _is_ignored(info.filename)
        and info.filename.lower().endswith(CATALOG_SUFFIXES)
    ]
    if len(found) > 1:
        names = ", ".join(info.filename for info in found[:5])
        raise FeedError(f"the archive holds {len(found)} catalog files ({names}); put one CSV or TSV in it")
    return found[0] if found else None


class ZipImages:
    """Reads the photos a catalog CSV names from its archive, within the archive's limits."""

    def __init__(
        self,
        archive: zipfile.ZipFile,
        *,
        base: PurePosixPath,
        max_file_bytes: int,
        max_total_bytes: int,
        max_pixels: int,
    ) -> None:
        self.archive, self.base = archive, base
        self.max_file_bytes, self.max_total_bytes, self.max_pixels = (
            max_file_bytes,
            max_total_bytes,
            max_pixels,
        )
        self.total_bytes = 0
        entries = [info for info in archive.infolist() if not info.is_dir()]
        self.by_path = {info.filename.replace("\\", "/").lstrip("./"): info for info in entries}
        self.by_lower = {path.lower(): info for path, info in self.by_path.items()}

    def read(self, name: str) -> LocalImage:
        """The image at ``name``; ``ValueError`` with the reason (and the fix) when it cannot be read."""
        try:
            relative = _safe_relative_path(name.replace("%20", " "))
        except ValueError as error:
            raise ValueError(f"{name!r}: {error}") from None
        info = self._find(relative)
        if info is None:
            raise ValueError(
                f"{name!r} is not in the archive (looked for {(self.base / relative).as_posix()!r}); "
                "image cells are paths relative to the CSV inside the ZIP"
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ValueError(f"{name!r}: symbolic link refused")
        if info.flag_bits & 0x1:
            raise ValueError(f"{name!r}: encrypted file; upload an unencrypted archive")
        try:
            with self.archive.open(info) as stream:
                content = _read_limited(stream, self.max_file_bytes)
        except _TooLarge as error:
            raise ValueError(f"{name!r}: {error}") from None
        except (zipfile.BadZipFile, zlib.error, NotImplementedError, OSError, EOFError) as error:
            raise ValueError(f"{name!r}: corrupt archive entry: {error}") from None
        self.total_bytes += len(content)
        if self.total_bytes > self.max_total_bytes:
            raise FeedError(f"the archive expands past the limit of {self.max_total_bytes:,} bytes")
        try:
            image = inspect_image(content, max_pixels=self.max_pixels)
        except ImageRejected as error:
            raise ValueError(f"{name!r}: {error}") from None
        return LocalImage(name=info.filename, content=content, content_type=image.content_type)

    def _find(self, relative: PurePosixPath) -> zipfile.ZipInfo | None:
        for candidate in (self.base / relative, relative):
            path = candidate.as_posix()
            info = self.by_path.get(path) or self.by_lower.get(path.lower())
            if info is not None:
                return info
        return None


def parse_catalog_zip(
    data: bytes | BinaryIO,
    *,
    base_url: str = "",
    max_files: int = DEFAULT_MAX_FILES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_catalog_bytes: int = 200 * 1024**2,
) -> Iterator[ParsedRecord]:
    """Read the archive's catalog CSV, its image cells from the archive. Raises ``FeedError`` when the
    archive is unreadable, over its limits, or holds no (or several) catalog files."""
    archive = open_zip(data)
    entries = [info for info in archive.infolist() if not info.is_dir() and not _is_ignored(info.filename)]
    if len(entries) > max_files:
        raise FeedError(f"the archive holds {len(entries):,} files; the limit is {max_files:,}")
    declared_bytes = sum(info.file_size for info in entries)
    if declared_bytes > max_total_bytes:
        raise FeedError(
            f"the archive expands to {declared_bytes:,} bytes; the limit is {max_total_bytes:,} bytes"
        )
    entry = catalog_entry(archive)
    if entry is None:
        raise FeedError("the archive holds no CSV or TSV file")
    try:
        with archive.open(entry) as stream:
            catalog = _read_limited(stream, max_catalog_bytes)
    except _TooLarge:
        raise FeedError(f"{entry.filename} is larger than {max_catalog_bytes:,} bytes") from None
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, OSError, EOFError) as error:
        raise FeedError(f"{entry.filename}: corrupt archive entry: {error}") from None
    images = ZipImages(
        archive,
        base=_safe_relative_path(entry.filename).parent,
        max_file_bytes=max_file_bytes,
        max_total_bytes=max_total_bytes,
        max_pixels=max_pixels,
    )
    return parse_csv(catalog, base_url=base_url, local_images=images.read)
