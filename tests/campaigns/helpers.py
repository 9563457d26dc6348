"""Helpers for the campaign tests."""

from __future__ import annotations

import re

import numpy as np

DIMENSIONS = 4
# A desktop browser: the bot filter ignores the empty user agent of the test client.
BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
)


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def embed_as(creative, vector: np.ndarray, space) -> None:
    """Store a vector on the creative as the embedding task would."""
    from django.utils import timezone

    from campaigns import services
    from campaigns.models import Creative

    Creative.objects.filter(pk=creative.pk).update(
        vector=np.asarray(vector, dtype=np.float32),
        space=space,
        embedding_status=Creative.EmbeddingStatus.READY,
        embedded_at=timezone.now(),
        updated_at=timezone.now(),
    )
    services.bump_setup_version()  # as embed_creative does after its update()
    creative.refresh_from_db()


def shown_product_ids(response) -> list[int]:
    """The product ids of a landing page's grid, in order."""
    html = response.content.decode()
    grid = html[html.index('class="product-grid campaign-grid"') :]
    return [int(pk) for pk in re.findall(r'<article class="product-card" data-product-id="(\d+)"', grid)]
