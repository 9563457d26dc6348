"""Writes to the bundled catalog."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable

from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image

from shop.demo_catalog import DemoProduct
from shop.models import Category, Product, ProductImage, Store

DEMO_STORE_NAME = "Lookalike demo store"


def store_image_bytes(
    *, product: Product, data: bytes, filename: str, position: int, source_url: str = ""
) -> ProductImage:
    """Store one photo of a product (content-addressed file name, dimensions recorded)."""
    width, height = Image.open(io.BytesIO(data)).size
    image = ProductImage(
        product=product,
        position=position,
        source_url=source_url,
        sha256=hashlib.sha256(data).hexdigest(),
        status=ProductImage.Status.STORED,
    )
    image.image.save(filename, ContentFile(data), save=False)
    # Assigning the file resets the dimension fields; set them from the bytes we already decoded.
    image.width, image.height = width, height
    image.save()
    return image


def load_demo_catalog(products: Iterable[DemoProduct], *, store_name: str = DEMO_STORE_NAME) -> Store:
    """Create the demo store from generated records; products that already exist are left as they are."""
    store, _ = Store.objects.get_or_create(
        name=store_name, defaults={"base_url": "https://demo.lookalike.example/"}
    )
    existing = set(store.products.values_list("external_id", flat=True))
    categories: dict[tuple[str, ...], Category | None] = {}
    with transaction.atomic():
        for record in products:
            if record.external_id in existing:
                continue
            path = tuple(record.category_path)
            if path not in categories:
                categories[path] = Category.from_path(list(path))
            product = Product.objects.create(
                store=store,
                external_id=record.external_id,
                title=record.title,
                description=record.description,
                url=record.url,
                brand=record.brand,
                price=record.price,
                currency=record.currency,
                in_stock=record.in_stock,
                category=categories[path],
                attributes=record.attributes,
            )
            for position, image in enumerate(record.images):
                store_image_bytes(
                    product=product, data=image.draw(), filename=image.filename, position=position
                )
    return store
