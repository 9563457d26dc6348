"""The ``RECOMMENDATIONS`` settings dict, with its defaults in code."""

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Encoder key from recommendations.encoders.ENCODERS; "efficientnet_lite0" works with no internet.
    "ENCODER": "resnet50",
    # "DEFAULT" (official pretrained weights, downloaded once into TORCH_HOME), a local .pth path, or
    # "random" (tests of mechanics only; never used unless asked for).
    "WEIGHTS": "DEFAULT",
    # None = CUDA when available, else CPU.
    "DEVICE": None,
    "BATCH_SIZE": 64,
    # Threads decoding JPEGs ahead of the model.
    "DECODE_WORKERS": 2,
    # torch threads per worker process (None = torch's default).
    "TORCH_THREADS": None,
    # How many image ids one embedding task takes when a whole catalog is fanned out.
    "TASK_CHUNK_SIZE": 256,
    # A product's query vector: "primary" (its first image) or "mean" (mean of its images).
    "PRODUCT_VECTOR": "primary",
    # Field names on the product model (see docs/plugin.md). Missing optional fields disable their filters.
    "CATALOG_FIELDS": {
        "title": "title",
        "price": "price",
        "in_stock": "in_stock",
        "category": "category",
        "brand": "brand",
        "store": "store",
        "url": None,  # None: get_absolute_url()
    },
    # Field names on the image model.
    "IMAGE_FIELDS": {
        "product": "product",
        "image": "image",
        "position": "position",
        # Optional: where embedding failures are reported back to the catalog (None to skip).
        "status": "status",
        "failure_reason": "failure_reason",
    },
    "SIMILAR_LIMIT": 8,
    "SIMILAR_IN_STOCK_ONLY": True,
    "HNSW_EF_SEARCH": 100,
    "HNSW_MAX_SCAN_TUPLES": 20000,
    # Below this many candidate products a filtered query scans exactly instead of using the index.
    "EXACT_SCAN_THRESHOLD": 2000,
    "NEIGHBOURS_K": 20,
    # Precomputed neighbours older than this are treated as stale and the live query is used.
    "NEIGHBOURS_MAX_AGE_S": 24 * 3600,
    "IMAGE_SEARCH_MAX_BYTES": 10 * 1024 * 1024,
    "IMAGE_SEARCH_MAX_PIXELS": 40_000_000,
}


def app_setting(name: str) -> Any:
    user = getattr(settings, "RECOMMENDATIONS", {})
    if name in ("CATALOG_FIELDS", "IMAGE_FIELDS"):
        return {**DEFAULTS[name], **user.get(name, {})}
    return user.get(name, DEFAULTS[name])
