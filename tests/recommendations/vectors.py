"""Catalog rows with synthetic vectors for the similarity tests (fast: no images, no encoder)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np


def clustered_vectors(n: int, dimensions: int, *, clusters: int = 50, spread: float = 0.6, seed: int = 0):
    """Unit vectors around random centres, like real embeddings (which are never uniform noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dimensions))
    vectors = centres[rng.integers(0, clusters, size=n)] + spread * rng.normal(size=(n, dimensions))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def create_space(dimensions: int, *, state: str = "active", encoder: str = "test"):
    from recommendations.models import EmbeddingSpace

    return EmbeddingSpace.objects.create(encoder=encoder, weights_id="t", dimensions=dimensions, state=state)


def create_catalog(
    store, vectors: np.ndarray, *, space, categories=(), in_stock=None, prices=None, shas=None
):
    """One product per vector (bulk-created); returns the products in vector order.

    categories: cycled over the products; in_stock / prices / shas: per-product lists (default in stock,
    10.00, one unique digest each).
    """
    from recommendations.models import ProductEmbedding
    from shop.models import Product

    n = len(vectors)
    products = Product.objects.bulk_create(
        Product(
            store=store,
            external_id=f"v{i}",
            title=f"Vector product {i}",
            price=Decimal(prices[i]) if prices is not None else Decimal("10.00"),
            in_stock=True if in_stock is None else in_stock[i],
            category=categories[i % len(categories)] if categories else None,
        )
        for i in range(n)
    )
    ProductEmbedding.objects.bulk_create(
        ProductEmbedding(
            space=space,
            product=product,
            vector=vectors[i],
            image_sha256s=shas[i] if shas is not None else [f"{product.pk:064x}"],
        )
        for i, product in enumerate(products)
    )
    return products


def exact_ids(vectors: np.ndarray, query: np.ndarray, candidates: np.ndarray, k: int) -> list[int]:
    """Brute force in float16 (the stored precision): positions of the k best candidates."""
    stored = vectors.astype(np.float16).astype(np.float32)
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    q = query.astype(np.float16).astype(np.float32)
    scores = stored[candidates] @ (q / np.linalg.norm(q))
    return [int(candidates[i]) for i in np.argsort(-scores, kind="stable")[:k]]
