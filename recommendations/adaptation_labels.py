"""What a catalog knows about its photos, as training labels for catalog adaptation (``adaptation``).

Per photo: its product (several photos of one product belong together), and its product's category (the
``category`` role), colour (the ``colour`` role, or a colour attribute) and design (the ``group`` role, or a
design / style / item-group attribute). Products are assigned to the held-out validation part by a digest
of their design (else of the product), so every colourway of a design lands on the same side.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lookalike import catalog
from recommendations import services
from recommendations.conf import app_setting


@dataclass
class CatalogPhotos:
    """The embeddable photos of the catalog, their product and the labels their product carries."""

    image_ids: list[int]
    product_ids: list[int]
    files: list[str]
    category: dict[int, Any] = field(default_factory=dict)  # product id -> label
    colour: dict[int, str] = field(default_factory=dict)
    group: dict[int, str] = field(default_factory=dict)


def _attribute_label(attributes: Any, names: Sequence[str]) -> str | None:
    if not isinstance(attributes, dict):
        return None
    lowered = {str(key).lower(): value for key, value in attributes.items()}
    for name in names:
        value = lowered.get(name)
        if isinstance(value, str | int) and str(value).strip():
            return str(value).strip().lower()
    return None


def _role_labels(product_ids: list[int], role: str) -> dict[int, Any]:
    if catalog.product_role(role) is None:
        return {}
    return {
        pk: value for pk, value in catalog.role_values(product_ids, role).items() if value not in (None, "")
    }


def catalog_photos() -> CatalogPhotos:
    """Every photo with a stored file of a listed product, with its product's labels."""
    file_field = catalog.image_field("image") or "image"
    product_attname = catalog.image_product_attname()
    listed = catalog.products().filter(catalog.listed_q()).values("pk")
    rows = list(
        services.embeddable_images()
        .filter(**{f"{product_attname}__in": listed})
        .order_by("pk")
        .values_list("pk", product_attname, file_field)
    )
    photos = CatalogPhotos(
        image_ids=[row[0] for row in rows],
        product_ids=[row[1] for row in rows],
        files=[row[2] for row in rows],
    )
    product_ids = sorted(set(photos.product_ids))
    photos.category = _role_labels(product_ids, "category")
    photos.colour = {pk: str(value).lower() for pk, value in _role_labels(product_ids, "colour").items()}
    photos.group = {pk: str(value) for pk, value in _role_labels(product_ids, "group").items()}
    if catalog.product_role("attributes") is not None:
        for pk, attributes in catalog.role_values(product_ids, "attributes").items():
            colour = _attribute_label(attributes, app_setting("ADAPT_COLOUR_ATTRIBUTES"))
            if colour and pk not in photos.colour:
                photos.colour[pk] = colour
            group = _attribute_label(attributes, app_setting("ADAPT_GROUP_ATTRIBUTES"))
            if group and pk not in photos.group:
                photos.group[pk] = group
    return photos


def _class_ids(values: Sequence[Any | None]) -> np.ndarray:
    """Label values -> class ids 0..n-1, -1 where unknown."""
    classes = {
        value: index for index, value in enumerate(sorted({v for v in values if v is not None}, key=str))
    }
    return np.asarray(
        [classes.get(value, -1) if value is not None else -1 for value in values], dtype=np.int64
    )


def _in_validation(key: str, share: float) -> bool:
    # A digest, not random.shuffle: the same product stays on the same side in every run. Salted, so that
    # a catalog split by a plain digest of the same keys elsewhere is not split again along the same line.
    digest = int(hashlib.sha256(f"lookalike-validation:{key}".encode()).hexdigest()[:8], 16)
    return digest % 10_000 < share * 10_000


@dataclass
class Labels:
    product: np.ndarray  # per photo: class of its product when it has 2+ photos, else -1
    category: np.ndarray
    colour: np.ndarray
    category_colour: np.ndarray
    labelled: np.ndarray  # bool per photo: its product carries some label
    validation: np.ndarray  # bool per photo: its product is held out


def photo_labels(photos: CatalogPhotos, valid: np.ndarray, *, validation_share: float) -> Labels:
    product_ids = photos.product_ids
    counts: dict[int, int] = {}
    for pk, ok in zip(product_ids, valid, strict=True):
        if ok:
            counts[pk] = counts.get(pk, 0) + 1
    product = [pk if counts.get(pk, 0) >= 2 else None for pk in product_ids]
    category = [photos.category.get(pk) for pk in product_ids]
    colour = [photos.colour.get(pk) for pk in product_ids]
    category_colour = [
        f"{c}|{k}" if c is not None and k is not None else None for c, k in zip(category, colour, strict=True)
    ]
    labelled = np.asarray(
        [
            ok and (p is not None or c is not None or k is not None)
            for ok, p, c, k in zip(valid, product, category, colour, strict=True)
        ]
    )
    validation = np.asarray(
        [_in_validation(photos.group.get(pk) or f"product:{pk}", validation_share) for pk in product_ids]
    )
    return Labels(
        product=_class_ids(product),
        category=_class_ids(category),
        colour=_class_ids(colour),
        category_colour=_class_ids(category_colour),
        labelled=labelled,
        validation=validation,
    )
