"""A catalog made of image files: a folder on disk or an uploaded ZIP, one product per image.

``men/shirts/blue-polo_shirt.jpg`` becomes a product with external_id ``"men/shirts/blue-polo_shirt.jpg"``
(the relative path, so a re-upload updates the same products), title ``"Blue polo shirt"`` and
category ``["men", "shirts"]`` (folder names as they are, outermost first; a folder wrapping the
whole archive counts as a category too). The image bytes travel in ``ScrapedProduct.image_files``.

Uploads are untrusted, so the ZIP reader refuses entries with absolute paths, ``..`` parts or
symbolic links; refuses archives with more than ``max_files`` files or whose declared sizes add up
past ``max_total_bytes`` (before reading anything); checks every file's declared size and its actual
size while decompressing (zip bombs); and reads only each image's header to refuse pixel bombs.
``__MACOSX/``, dotfiles and ``Thumbs.db`` are skipped silently; other non-image files are
``RowError``s. This module also holds the image sniffing the HTTP client uses for downloads.
"""

from __future__ import annotations

import io
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

from PIL import Image

from .records import FeedError, LocalImage, ParsedRecord, RowError, ScrapedProduct

DEFAULT_MAX_FILES = 10_000
DEFAULT_MAX_TOTAL_BYTES = 2 * 1024**3
DEFAULT_MAX_FILE_BYTES = 20 * 1024**2
# 40 Mpx is larger than any product photo (8000 x 5000) and decodes to 120 MB of RGB.
DEFAULT_MAX_PIXELS = 40_000_000

_IGNORED_NAMES = {"thumbs.db", "desktop.ini"}
_READ_CHUNK_BYTES = 1 << 16


class ImageRejected(ValueError):
    """The bytes are not an image this project can use; the message says why."""


class ImageTooLarge(ImageRejected):
    """The image declares more pixels than allowed (a decompression bomb, or simply too big)."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    content_type: str
    width: int
    height: int


def sniff_image_type(data: bytes) -> str | None:
    """The image MIME type from the first bytes (magic numbers), or ``None`` when it is not an image.

    A file extension or a Content-Type header can lie (an HTML error page served as image/jpeg);
    the first bytes of an image cannot.
    """
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "image/avif"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1"):
        return "image/heic"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if data.startswith(b"BM") and len(data) >= 26 and data[6:10] == b"\x00\x00\x00\x00":
        return "image/bmp"
    return None


def inspect_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, decode: bool = False) -> ImageInfo:
    """Check that ``data`` is an image of at most ``max_pixels`` pixels; raises ``ImageRejected``.

    Only the header is read unless ``decode`` is true, so a 20000 x 20000 PNG is refused without
    allocating its 400 million pixels. ``decode=True`` also decodes the pixels, which catches
    truncated and corrupt files (at the cost of a full decode).
    """
    content_type = sniff_image_type(data)
    if content_type is None:
        raise ImageRejected(f"not an image (starts with {data[:16]!r})")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(f"image has too many pixels to decode safely: {error}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageRejected(f"unreadable {content_type} image: {error}") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLarge(
                f"image is {width} x {height} px ({width * height / 1e6:.0f} Mpx), "
                f"over the limit of {max_pixels / 1e6:.0f} Mpx"
            )
        if decode:
            try:
                image.load()
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
                raise ImageRejected(f"{content_type} image is corrupt or truncated: {error}") from None
    return ImageInfo(content_type=content_type, width=width, height=height)


def title_from_file_name(name: str) -> str:
    """``"blue-polo_shirt.jpg"`` → ``"Blue polo shirt"``."""
    words = re.sub(r"[-_\s]+", " ", PurePosixPath(name).stem).strip()
    return words[:1].upper() + words[1:]


def parse_image_zip(
    data: bytes | BinaryIO,
    *,
    max_files: int = DEFAULT_MAX_FILES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[ParsedRecord]:
    """One product per image in a ZIP archive (bytes or a seekable binary file such as an upload).

    Raises ``FeedError`` at once when the archive is unreadable, holds more than ``max_files`` files
    or declares more than ``max_total_bytes`` in total; raises it during iteration if the files
    actually expand past ``max_total_bytes`` (the records before it are valid). Per-file problems
    (unsafe path, link, not an image, over ``max_file_bytes`` or ``max_pixels``) are ``RowError``s.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise FeedError(f"not a readable ZIP archive: {error}") from None
    entries = [info for info in archive.infolist() if not info.is_dir() and not _is_ignored(info.filename)]
    if len(entries) > max_files:
        archive.close()
        raise FeedError(f"the archive holds {len(entries):,} files; the limit is {max_files:,}")
    declared_bytes = sum(info.file_size for info in entries)
    if declared_bytes > max_total_bytes:
        archive.close()
        raise FeedError(
            f"the archive expands to {declared_bytes:,} bytes; the limit is {max_total_bytes:,} bytes"
        )
    return _iter_zip_entries(
        archive,
        entries,
        max_total_bytes=max_total_bytes,
        max_file_bytes=max_file_bytes,
        max_pixels=max_pixels,
    )


def _iter_zip_entries(
    archive: zipfile.ZipFile,
    entries: list[zipfile.ZipInfo],
    *,
    max_total_bytes: int,
    max_file_bytes: int,
    max_pixels: int,
) -> Iterator[ParsedRecord]:
    total_bytes = 0
    seen: set[str] = set()
    with archive:
        for info in entries:
            source_ref = info.filename
            try:
                path = _safe_relative_path(info.filename)
            except ValueError as error:
                yield RowError(source_ref=source_ref, reason=str(error))
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                yield RowError(source_ref=source_ref, reason="symbolic link refused")
                continue
            if info.flag_bits & 0x1:
                yield RowError(source_ref=source_ref, reason="encrypted file; upload an unencrypted archive")
                continue
            if info.file_size > max_file_bytes:
                yield RowError(source_ref=source_ref, reason=_too_large(info.file_size, max_file_bytes))
                continue
            if str(path) in seen:
                yield RowError(source_ref=source_ref, reason="the archive holds this path twice")
                continue
            seen.add(str(path))
            try:
                with archive.open(info) as stream:
                    content = _read_limited(stream, max_file_bytes)
            except _TooLarge as error:
                yield RowError(source_ref=source_ref, reason=str(error))
                continue
            except (zipfile.BadZipFile, zlib.error, NotImplementedError, OSError, EOFError) as error:
                yield RowError(source_ref=source_ref, reason=f"corrupt archive entry: {error}")
                continue
            total_bytes += len(content)
            if total_bytes > max_total_bytes:
                raise FeedError(f"the archive expands past the limit of {max_total_bytes:,} bytes")
            yield _product_from_image(path, content, source_ref=source_ref, max_pixels=max_pixels)


def parse_image_folder(
    path: str | os.PathLike[str],
    *,
    max_files: int = DEFAULT_MAX_FILES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[ParsedRecord]:
    """One product per image under a folder, in sorted path order; symbolic links are not followed.

    Raises ``FeedError`` when ``path`` is not a folder, and during iteration when more than
    ``max_files`` files or ``max_total_bytes`` bytes are met (the records before it are valid).
    """
    root = Path(path)
    if not root.is_dir():
        raise FeedError(f"{root} is not a folder")
    return _iter_folder(
        root,
        max_files=max_files,
        max_total_bytes=max_total_bytes,
        max_file_bytes=max_file_bytes,
        max_pixels=max_pixels,
    )


def _iter_folder(
    root: Path, *, max_files: int, max_total_bytes: int, max_file_bytes: int, max_pixels: int
) -> Iterator[ParsedRecord]:
    file_count = 0
    total_bytes = 0
    for folder, folder_names, file_names in os.walk(root, followlinks=False):
        folder_path = Path(folder)
        folder_names[:] = sorted(name for name in folder_names if not _is_ignored(name + "/"))
        for name in list(folder_names):
            if (folder_path / name).is_symlink():
                folder_names.remove(name)
                link = (folder_path / name).relative_to(root).as_posix()
                yield RowError(source_ref=link + "/", reason="symbolic link refused")
        for name in sorted(file_names):
            file_path = folder_path / name
            relative = PurePosixPath(file_path.relative_to(root).as_posix())
            if _is_ignored(str(relative)):
                continue
            file_count += 1
            if file_count > max_files:
                raise FeedError(f"the folder holds more than {max_files:,} files")
            if file_path.is_symlink():
                yield RowError(source_ref=str(relative), reason="symbolic link refused")
                continue
            size_bytes = file_path.lstat().st_size
            if size_bytes > max_file_bytes:
                yield RowError(source_ref=str(relative), reason=_too_large(size_bytes, max_file_bytes))
                continue
            try:
                with file_path.open("rb") as stream:
                    content = _read_limited(stream, max_file_bytes)
            except _TooLarge as error:
                yield RowError(source_ref=str(relative), reason=str(error))
                continue
            except OSError as error:
                yield RowError(source_ref=str(relative), reason=f"unreadable file: {error.strerror}")
                continue
            total_bytes += len(content)
            if total_bytes > max_total_bytes:
                raise FeedError(f"the folder holds more than {max_total_bytes:,} bytes")
            yield _product_from_image(relative, content, source_ref=str(relative), max_pixels=max_pixels)


def _product_from_image(
    path: PurePosixPath, content: bytes, *, source_ref: str, max_pixels: int
) -> ScrapedProduct | RowError:
    try:
        info = inspect_image(content, max_pixels=max_pixels)
    except ImageRejected as error:
        return RowError(source_ref=source_ref, reason=str(error))
    return ScrapedProduct(
        external_id=str(path),
        title=title_from_file_name(path.name) or str(path),
        category_path=[part.strip() for part in path.parent.parts if part.strip()],
        image_files=[LocalImage(name=str(path), content=content, content_type=info.content_type)],
        attributes={"width": info.width, "height": info.height},
        source_ref=source_ref,
    )


def read_image_file(
    base_dir: str | os.PathLike[str],
    name: str,
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LocalImage:
    """Read the image ``name`` (a path relative to ``base_dir``, as a catalog file lists it).

    Raises ``ValueError`` with the reason for absolute paths, ``..`` parts, a path that leads outside
    ``base_dir`` through a symbolic link, a missing file, a file over ``max_file_bytes`` and anything
    that is not an image of at most ``max_pixels`` pixels (only the header is read for that).
    """
    root = Path(base_dir).resolve()
    try:
        relative = _safe_relative_path(name.replace("%20", " "))
    except ValueError as error:
        raise ValueError(f"{name!r}: {error}") from None
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"{name!r} leads outside the catalog folder")
    if not path.is_file():
        raise ValueError(f"file {name!r} not found next to the catalog file")
    try:
        with path.open("rb") as stream:
            content = _read_limited(stream, max_file_bytes)
    except _TooLarge:
        raise ValueError(f"{name!r}: {_too_large(path.stat().st_size, max_file_bytes)}") from None
    except OSError as error:
        raise ValueError(f"{name!r} is unreadable: {error.strerror}") from None
    try:
        info = inspect_image(content, max_pixels=max_pixels)
    except ImageRejected as error:
        raise ValueError(f"{name!r}: {error}") from None
    return LocalImage(name=relative.as_posix(), content=content, content_type=info.content_type)


def _is_ignored(name: str) -> bool:
    """macOS resource forks, dotfiles and Windows thumbnails: noise, not products."""
    parts = [part for part in re.split(r"[/\\]", name) if part]
    return (
        not parts
        or parts[0] == "__MACOSX"
        or any(part.startswith(".") and part not in (".", "..") for part in parts)
        or parts[-1].lower() in _IGNORED_NAMES
    )


_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def _safe_relative_path(name: str) -> PurePosixPath:
    """The entry name as a relative path; ``ValueError`` for absolute paths and ``..`` parts."""
    if name.startswith(("/", "\\")) or _WINDOWS_DRIVE.match(name):
        raise ValueError("absolute path refused")
    parts = [part for part in re.split(r"[/\\]", name) if part not in ("", ".")]
    if ".." in parts:
        raise ValueError("path with '..' refused")
    if not parts:
        raise ValueError("empty path")
    return PurePosixPath(*parts)


class _TooLarge(ValueError):
    pass


def _too_large(size_bytes: int, max_file_bytes: int) -> str:
    return f"file is {size_bytes:,} bytes; the limit is {max_file_bytes:,} bytes"


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


def _read_limited(stream: _Readable, max_bytes: int) -> bytes:
    """Read at most ``max_bytes``; sizes in headers can lie, so the limit holds on what is actually read."""
    chunks: list[bytes] = []
    size_bytes = 0
    while chunk := stream.read(_READ_CHUNK_BYTES):
        size_bytes += len(chunk)
        if size_bytes > max_bytes:
            raise _TooLarge(f"file expands past the limit of {max_bytes:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
