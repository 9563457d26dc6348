"""Image bytes -> RGB images -> preprocessed batches: the CPU side of the embedding pipeline.

Every way an uploaded or scraped file can be broken ends in BadImage with a short reason, so one bad image
never stops a batch. This module knows nothing about Django.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import io
import itertools
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

K = TypeVar("K")

# Formats a shop photo comes in. Pillow can open many more (EPS even runs Ghostscript), which an upload
# or a scraped URL must not reach.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
# Batches decoded ahead of the one the model is working on.
PREFETCH_BATCHES = 2
_TRANSPARENT_MODES = ("RGBA", "LA", "La", "RGBa", "PA")
_HIGH_BIT_DEPTH_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N", "F")
# Modes Image.reduce() works on (palette images are left whole: one byte per pixel).
_REDUCIBLE_MODES = ("L", "LA", "La", "RGB", "RGBA", "RGBa", "CMYK", "I", "F")
_REDUCE_BAND_ROWS = 64  # output rows per band: a few MB of copies at a time


class BadImage(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ImageTooLarge(BadImage):
    """More pixels than allowed: declared in the header, or (``max_decode_pixels``) to be decoded."""


@dataclass(frozen=True)
class ImageInfo:
    sha256: str
    width: int  # as stored, before any EXIF rotation
    height: int
    format: str
    mime_type: str


@dataclass
class Batch(Generic[K]):
    keys: list[K]  # keys of the images in `tensor`, in order
    tensor: torch.Tensor | None  # NCHW, None when every image of the batch failed
    failures: list[tuple[K, str]] = field(default_factory=list)  # (key, reason)


def _open(data: bytes, *, max_pixels: int | None) -> Image.Image:
    """Image.open (header only) with every failure turned into BadImage."""
    if not data:
        raise BadImage("empty file")
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        raise BadImage(f"not an image, or not one of {', '.join(ALLOWED_FORMATS)}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        # Pillow's own limit (Image.MAX_IMAGE_PIXELS) fires inside open(), before we see the size.
        raise BadImage(f"image too large, refused as a possible decompression bomb: {error}") from None
    except OSError as error:
        raise BadImage(f"truncated or corrupt image header ({error})") from None
    except Exception as error:  # a damaged header can raise almost anything from a plugin
        raise BadImage(f"unreadable image header ({type(error).__name__}: {error})") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise BadImage(f"image has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        # Checked on the header, before a single pixel is decoded.
        raise ImageTooLarge(
            f"image too large: {width}x{height} = {width * height:,} pixels, "
            f"more than the {max_pixels:,} allowed"
        )
    return image


def _to_8bit_gray(image: Image.Image) -> Image.Image:
    # Pillow's convert("RGB") clips 16-bit values at 255 instead of scaling them; scale by hand.
    values = np.asarray(image, dtype=np.float64)
    if image.mode != "F":
        values = values / 257.0  # 65535 -> 255
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        image = _to_8bit_gray(image)
    if image.mode in _TRANSPARENT_MODES or "transparency" in image.info:
        # Product cut-outs sit on white in a shop; Pillow would turn transparent pixels black.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _apply_exif_orientation(image: Image.Image) -> None:
    # A damaged EXIF block should not cost the photo: it is then kept as stored.
    with contextlib.suppress(Exception):
        ImageOps.exif_transpose(image, in_place=True)


def _reduce(image: Image.Image, *, target_px: int) -> Image.Image:
    """Shrink a decoded image by a whole factor (box filter) while its smaller side stays at least twice
    ``target_px``: the mode conversions after it then copy a small image, not a 12 Mpx one. The final
    antialiased resize to the model's size hardly sees the difference.

    Reduced in bands of rows: ``Image.reduce`` on a whole RGBA image makes a premultiplied copy of it first,
    which would double the memory this is meant to save. The last ``factor - 1`` rows and columns at most
    are left out."""
    factor = min(image.size) // (2 * target_px)
    if factor < 2 or image.mode not in _REDUCIBLE_MODES:
        return image
    width, height = (side - side % factor for side in image.size)
    reduced = Image.new(image.mode, (width // factor, height // factor))
    band = factor * _REDUCE_BAND_ROWS
    for top in range(0, height, band):
        strip = image.crop((0, top, width, min(top + band, height)))
        reduced.paste(strip.reduce(factor), (0, top // factor))
    reduced.info = dict(image.info)  # EXIF orientation is applied after this
    return reduced


def load_image(
    data: bytes,
    *,
    target_px: int = 256,
    max_pixels: int = 50_000_000,
    max_decode_pixels: int | None = None,
) -> Image.Image:
    """Decode image bytes into an upright RGB image; raises BadImage (and nothing else) for a bad file.

    target_px: the smallest side the preprocessing needs; JPEGs are decoded at the smallest DCT scale
    (1/2, 1/4, 1/8) that still gives at least that, which makes large photos several times cheaper; other
    formats are decoded whole, then reduced by a whole factor before any conversion.
    max_pixels: images whose header declares more pixels are refused before decoding (Pillow's own
    limit, twice Image.MAX_IMAGE_PIXELS, applies on top). Animated images give their first frame.
    max_decode_pixels: refuse (ImageTooLarge) images that would decode to more pixels than this after the
    JPEG scaling: it bounds the memory of formats that cannot be decoded at a reduced size (PNG, WebP, GIF).
    """
    image = _open(data, max_pixels=max_pixels)
    try:
        if image.format in ("JPEG", "MPO"):  # MPO: the multi-picture JPEGs some cameras write
            image.draft("RGB", (target_px, target_px))
        width, height = image.size
        if max_decode_pixels is not None and width * height > max_decode_pixels:
            raise ImageTooLarge(
                f"a {image.format or 'image'} of {width}x{height} pixels is decoded whole; up to "
                f"{max_decode_pixels:,} pixels are accepted (JPEGs are decoded at a reduced size)"
            )
        image.load()  # decodes the first frame; raises OSError on truncated data
        image = _reduce(image, target_px=target_px)
        _apply_exif_orientation(image)
        return _to_rgb(image)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadImage(f"image too large, refused as a possible decompression bomb: {error}") from None
    except OSError as error:
        raise BadImage(f"truncated or corrupt image data ({error})") from None
    except Exception as error:  # MemoryError included: a bad file must not take the worker down
        raise BadImage(f"cannot decode image ({type(error).__name__}: {error})") from None


def image_info(data: bytes) -> ImageInfo:
    """Hash, size and format from the header alone (no pixel decoding); raises BadImage for a bad file."""
    image = _open(data, max_pixels=None)
    image_format = image.format or ""
    return ImageInfo(
        sha256=hashlib.sha256(data).hexdigest(),
        width=image.size[0],
        height=image.size[1],
        format=image_format,
        mime_type=Image.MIME.get(image_format, "application/octet-stream"),
    )


# --- batches for the model -------------------------------------------------------------------------------


def _decode_and_preprocess(
    data: bytes,
    *,
    preprocess: Callable[[Image.Image], torch.Tensor],
    target_px: int,
    max_pixels: int,
) -> torch.Tensor | str:
    """A preprocessed tensor, or the reason the image failed (never an exception: it runs in a pool)."""
    try:
        return preprocess(load_image(data, target_px=target_px, max_pixels=max_pixels))
    except BadImage as error:
        return error.reason
    except Exception as error:
        return f"preprocessing failed ({type(error).__name__}: {error})"


def _collect(chunk: Iterable[tuple[K, Future[torch.Tensor | str] | torch.Tensor | str]]) -> Batch[K]:
    keys: list[K] = []
    tensors: list[torch.Tensor] = []
    failures: list[tuple[K, str]] = []
    for key, pending in chunk:
        result = pending.result() if isinstance(pending, Future) else pending
        if isinstance(result, str):
            failures.append((key, result))
        else:
            keys.append(key)
            tensors.append(result)
    return Batch(keys=keys, tensor=torch.stack(tensors) if tensors else None, failures=failures)


def iter_batches(
    items: Iterable[tuple[K, bytes]],
    *,
    preprocess: Callable[[Image.Image], torch.Tensor],
    batch_size: int,
    workers: int,
    target_px: int = 256,
    max_pixels: int = 50_000_000,
) -> Iterator[Batch[K]]:
    """Decode and preprocess (key, image bytes) pairs into model-ready batches, in input order.

    Each batch covers the next batch_size input items: those that decoded are in keys/tensor, the rest in
    failures with a reason. With workers > 0, a thread pool decodes PREFETCH_BATCHES batches ahead of the
    consumer (Pillow releases the GIL while decoding), so the model does not wait for JPEG decoding.
    workers=0 decodes inline.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    decode = functools.partial(
        _decode_and_preprocess, preprocess=preprocess, target_px=target_px, max_pixels=max_pixels
    )
    iterator = iter(items)
    chunks = iter(lambda: list(itertools.islice(iterator, batch_size)), [])

    if workers <= 0:
        for chunk in chunks:
            yield _collect([(key, decode(data)) for key, data in chunk])
        return

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
    pending: collections.deque[list[tuple[K, Future[torch.Tensor | str]]]] = collections.deque()
    try:
        for chunk in chunks:
            pending.append([(key, pool.submit(decode, data)) for key, data in chunk])
            if len(pending) > PREFETCH_BATCHES:
                yield _collect(pending.popleft())
        while pending:
            yield _collect(pending.popleft())
    finally:
        # A consumer that stops early must not leave queued decodes running.
        pool.shutdown(wait=False, cancel_futures=True)


# --- GPU decoding ----------------------------------------------------------------------------------------

_SOF_BASELINE = (0xC0, 0xC1)  # baseline and extended sequential, Huffman coded
_SOF_OTHER = (0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)
_MARKERS_WITHOUT_LENGTH = (0x01, *range(0xD0, 0xD8))


def _baseline_jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a sequential 8-bit 3-component JPEG, from its frame header; else None."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _MARKERS_WITHOUT_LENGTH:
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        segment_length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker in _SOF_BASELINE:
            # Frame header: precision, height (2 bytes), width (2 bytes), number of components.
            header = data[position + 4 : position + 10]
            if len(header) != 6 or header[0] != 8 or header[5] != 3:
                return None
            height, width = int.from_bytes(header[1:3], "big"), int.from_bytes(header[3:5], "big")
            return (width, height) if width > 0 and height > 0 else None
        if marker in _SOF_OTHER:
            return None
        position += 2 + segment_length
    return None


def is_gpu_decodable(data: bytes) -> bool:
    """True for a sequential 8-bit 3-component JPEG, which nvJPEG batch decoding handles.

    Progressive, lossless, arithmetic-coded, grayscale and CMYK JPEGs and every other format are False: the
    caller decodes those on the CPU. Reads the segment headers only.
    """
    return _baseline_jpeg_size(data) is not None


TORCHVISION_DECODE_DEPRECATION = "The image decoding and encoding capabilities of TorchVision are deprecated"


def decode_jpegs_on_gpu(
    datas: list[bytes], device: torch.device | str, *, max_pixels: int | None = None
) -> list[torch.Tensor | None]:
    """Decode JPEGs on the GPU in one nvJPEG batch: CHW uint8 RGB tensors on `device`, in input order.

    None for an item that is not a baseline colour JPEG, declares more than max_pixels, or fails to
    decode: the caller falls back to load_image() for it (which refuses the oversized ones with a reason).
    Unlike load_image(), EXIF orientation is not applied (shop photos rarely carry it).
    """
    results: list[torch.Tensor | None] = [None] * len(datas)
    indices = []
    for index, data in enumerate(datas):
        size = _baseline_jpeg_size(data)
        if size is not None and (max_pixels is None or size[0] * size[1] <= max_pixels):
            indices.append(index)
    if not indices:
        return results
    from torchvision.io import ImageReadMode, decode_jpeg  # loads torchvision's image library: seconds

    encoded = [torch.frombuffer(bytearray(datas[index]), dtype=torch.uint8) for index in indices]
    # torchvision 0.29 deprecates its decoders in favour of TorchCodec, which needs FFmpeg's libraries at
    # run time; the pinned torchvision still ships nvJPEG batch decoding, so its notice is silenced here only.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", TORCHVISION_DECODE_DEPRECATION, DeprecationWarning)
        try:
            decoded = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            # One corrupt file fails the whole batch: decode one by one to keep the good ones.
            decoded = []
            for tensor in encoded:
                try:
                    decoded.append(decode_jpeg(tensor, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    decoded.append(None)
    for index, image in zip(indices, decoded, strict=True):
        results[index] = image
    return results


def iter_batches_on_gpu(
    items: Iterable[tuple[K, bytes]],
    *,
    preprocess: Callable[[Any], torch.Tensor],
    batch_size: int,
    workers: int,
    device: torch.device | str,
    target_px: int = 256,
    max_pixels: int = 50_000_000,
) -> Iterator[Batch[K]]:
    """iter_batches for a CUDA model: baseline JPEGs are decoded by nvJPEG and preprocessed on the GPU.

    preprocess must accept a PIL image and an NCHW uint8 tensor alike (torchvision's preset transforms
    do). Every other file (PNG, WebP, progressive/grayscale/CMYK JPEG, one nvJPEG refuses) is decoded on
    the CPU by the thread pool while the GPU works on the rest. The batches' tensors are on ``device``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = torch.device(device)
    decode_on_cpu = functools.partial(
        _decode_and_preprocess, preprocess=preprocess, target_px=target_px, max_pixels=max_pixels
    )
    iterator = iter(items)
    chunks = iter(lambda: list(itertools.islice(iterator, batch_size)), [])
    pool = ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="decode")
    try:
        for chunk in chunks:
            decoded = decode_jpegs_on_gpu([data for _, data in chunk], device, max_pixels=max_pixels)
            results: list[Future[torch.Tensor | str] | torch.Tensor | str] = [
                pool.submit(decode_on_cpu, data) if image is None else image
                for (_, data), image in zip(chunk, decoded, strict=True)
            ]
            # Same-sized photos (the usual case in a catalog) are resized and normalised as one tensor.
            on_gpu = {index: image for index, image in enumerate(decoded) if image is not None}
            by_size: dict[tuple[int, ...], list[int]] = collections.defaultdict(list)
            for index, image in on_gpu.items():
                by_size[tuple(image.shape)].append(index)
            for indices in by_size.values():
                try:
                    processed = preprocess(torch.stack([on_gpu[index] for index in indices]))
                except Exception as error:
                    for index in indices:
                        results[index] = f"preprocessing failed ({type(error).__name__}: {error})"
                    continue
                for index, tensor in zip(indices, processed, strict=True):
                    results[index] = tensor
            batch = _collect(
                (key, _on_device(result, device)) for (key, _), result in zip(chunk, results, strict=True)
            )
            yield batch
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _on_device(
    result: Future[torch.Tensor | str] | torch.Tensor | str, device: torch.device
) -> torch.Tensor | str:
    if isinstance(result, Future):
        result = result.result()
    return result.to(device, non_blocking=True) if isinstance(result, torch.Tensor) else result
