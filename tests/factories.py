"""Small helpers that create catalog rows with real image files."""

from __future__ import annotations

import hashlib
import io
import itertools
from decimal import Decimal

from django.core.files.base import ContentFile
from PIL import Image

_counter = itertools.count(1)


def jpeg_bytes(
    colour: tuple[int, int, int] = (200, 30, 30), size_px: int = 64, *, shape: str = "square"
) -> bytes:
    image = Image.new("RGB", (size_px, size_px), (245, 245, 245))
    if shape == "square":
        image.paste(colour, (size_px // 4, size_px // 4, 3 * size_px // 4, 3 * size_px // 4))
    else:
        image.paste(colour, (0, 0, size_px, size_px))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def add_image(product, data: bytes, *, position: int = 0, name: str = "photo.jpg"):
    from shop.models import ProductImage

    width, height = Image.open(io.BytesIO(data)).size
    image = ProductImage(
        product=product,
        position=position,
        sha256=hashlib.sha256(data).hexdigest(),
        status=ProductImage.Status.STORED,
        width=width,
        height=height,
    )
    image.image.save(name, ContentFile(data), save=False)
    image.width, image.height = width, height  # assigning the file resets them
    image.save()
    return image


def create_product(
    *,
    store,
    title: str | None = None,
    price: str = "19.99",
    in_stock: bool = True,
    category=None,
    brand: str = "",
    image: bytes | None = b"default",
    external_id: str | None = None,
):
    from shop.models import Product

    n = next(_counter)
    product = Product.objects.create(
        store=store,
        external_id=external_id or f"p{n}",
        title=title or f"Product {n}",
        price=Decimal(price),
        in_stock=in_stock,
        category=category,
        brand=brand,
    )
    if image is not None:
        add_image(product, jpeg_bytes() if image == b"default" else image)
    return product


def stored_bytes(field_file) -> bytes:
    """The bytes of a stored file, with the file closed again (``FieldFile.read()`` leaves it open)."""
    with field_file.open("rb") as opened:
        return opened.read()
