"""Campaign fixtures: an active embedding space with small hand-made vectors, and live campaigns."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tests.campaigns.helpers import DIMENSIONS, embed_as, unit
from tests.factories import create_product, jpeg_bytes

_slugs = itertools.count(1)


@pytest.fixture
def space(db):
    from recommendations.models import EmbeddingSpace

    return EmbeddingSpace.objects.create(
        encoder="test", weights_id="t", dimensions=DIMENSIONS, state="active"
    )


@pytest.fixture
def vector_product(store, space):
    """A product (with a photo) whose vector in the active space is ``vector``."""
    from recommendations.models import ProductEmbedding

    def make(vector: np.ndarray, **kwargs):
        kwargs.setdefault("store", store)
        product = create_product(**kwargs)
        ProductEmbedding.objects.create(
            space=space, product=product, vector=np.asarray(vector, dtype=np.float32)
        )
        return product

    return make


@pytest.fixture
def live_campaign(space):
    """A live campaign with one creative already embedded as ``vector``."""
    from campaigns.models import Campaign, Creative
    from campaigns.services import save_creative

    def make(vector: np.ndarray = unit(1, 0, 0, 0), *, creative_slug: str = "ad", **fields):
        fields.setdefault("name", f"Campaign {next(_slugs)}")
        fields.setdefault("slug", f"campaign-{next(_slugs)}")
        fields.setdefault("status", Campaign.Status.LIVE)
        campaign = Campaign.objects.create(**fields)
        creative = Creative(campaign=campaign, name="Ad", slug=creative_slug)
        save_creative(creative=creative, image_data=jpeg_bytes((20, 120, 200), 96))
        embed_as(creative, vector, space)
        campaign.refresh_from_db()
        return campaign

    return make
