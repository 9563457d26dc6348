"""The prototype pull of an adapted space: chosen on held-out products, kept only when it helps, and the same
whether a vector comes from the cached trunk outputs of training or from a worker rebuilding the space."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from django.urls import reverse
from torch import nn

from recommendations import adaptation, adaptation_model, encoders, recipes
from recommendations.adaptation_labels import Labels
from recommendations.recipe_encoder import RecipeEncoder, batch_pixels, describe_batch
from tests.recommendations.embedding_helpers import ENCODER


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def labels_for(*, category: np.ndarray, product: np.ndarray) -> Labels:
    unknown = np.full(len(category), -1)
    return Labels(
        product=product,
        category=category,
        colour=unknown,
        category_colour=unknown,
        labelled=np.ones(len(category), dtype=bool),
        validation=np.ones(len(category), dtype=bool),
    )


def bare_model(dimensions: int) -> adaptation_model.AdaptedModel:
    # Only the pull is exercised: identity trunk and tail keep the model small.
    return adaptation_model.AdaptedModel(
        nn.Identity(),
        nn.Identity(),
        cnn_dimensions=4,
        descriptor_dimensions=2,
        hidden=8,
        dimensions=dimensions,
    )


def test_the_pull_is_chosen_when_it_gathers_held_out_categories():
    rng = np.random.default_rng(0)
    centres = unit(rng.normal(size=(4, 32)))
    category = np.repeat(np.arange(4), 15)
    # Noisy members of four categories: their nearest neighbours are often of another category.
    vectors = unit(centres[category] + 1.6 * unit(rng.normal(size=(60, 32))))
    labels = labels_for(category=category, product=np.full(60, -1))
    rows = np.arange(60)
    unpulled = adaptation.validation_metrics(vectors, labels, rows)

    model = bare_model(32)
    model.proxies = [torch.zeros(0, 32), torch.from_numpy(centres).float(), torch.zeros(0, 32)]
    weights, scores = adaptation.choose_pull(model, vectors, labels, rows)

    assert weights["category"] > 0
    assert scores["category_precision@10"] > unpulled["category_precision@10"] + 0.05
    assert model.pull_sets == [(4, weights["category"])]


def test_no_pull_is_kept_when_it_does_not_help():
    rng = np.random.default_rng(1)
    # Tight products (two photos each): the unpulled space already finds every other photo.
    products = unit(rng.normal(size=(20, 32)))
    product = np.repeat(np.arange(20), 2)
    vectors = unit(products[product] + 0.05 * rng.normal(size=(40, 32)))
    labels = labels_for(category=np.full(40, -1), product=product)
    rows = np.arange(40)

    model = bare_model(32)
    unrelated = torch.from_numpy(unit(rng.normal(size=(3, 32)))).float()
    model.proxies = [torch.zeros(0, 32), unrelated, torch.zeros(0, 32)]
    weights, scores = adaptation.choose_pull(model, vectors, labels, rows)

    assert weights == {"category": 0.0, "category_colour": 0.0}
    assert scores == adaptation.validation_metrics(vectors, labels, rows)
    assert model.pull_sets == []


def test_a_rebuilt_space_embeds_like_training_did(data_dir):
    """Trunk pooling and pull survive the trip through the recipe and the stored state (real Lite0)."""
    from PIL import Image

    base = encoders.get_encoder(ENCODER, "DEFAULT", "cpu")
    trunk, tail = encoders.split_backbone(base)
    with (data_dir / "psychobunny" / "labels.csv").open() as handle:
        rows = list(csv.DictReader(handle))[:6]
    batch = torch.stack(
        [
            base.preprocess(Image.open(data_dir / "psychobunny" / "images" / row["image"]).convert("RGB"))
            for row in rows
        ]
    )
    mean, std = base.normalisation
    descriptors = describe_batch(batch_pixels(batch, mean, std))
    with torch.inference_mode():
        maps = trunk.eval()(batch).float()
    model = adaptation_model.AdaptedModel(
        trunk,
        tail,
        cnn_dimensions=int(base.dimensions),
        descriptor_dimensions=descriptors.shape[1],
        hidden=32,
        dimensions=16,
        trunk_channels=int(maps.shape[1]),
    ).eval()
    model.trunk_mean.copy_(maps.mean((0, 2, 3)))
    model.trunk_std.copy_(maps.mean((2, 3)).std(0) + 1e-3)
    prototypes = nn.functional.normalize(
        torch.randn(5, 16, generator=torch.Generator().manual_seed(0)), dim=1
    )
    model.set_pull([(prototypes, 0.5)])
    with torch.inference_mode():
        expected = model.head(maps, torch.from_numpy(descriptors)).numpy()
        unpulled = model.head_unpulled(maps, torch.from_numpy(descriptors)).numpy()
    assert not np.allclose(expected, unpulled, atol=1e-3)  # the pull does move the vectors

    recipe = {
        "kind": "adapted",
        "dimensions": 16,
        "hidden": 32,
        "trunk_channels": model.trunk_channels,
        "pull": [[count, weight] for count, weight in model.pull_sets],
        "descriptor": recipes.descriptor_layout(),
    }
    rebuilt = RecipeEncoder(base, recipe, model.learned_state())
    vectors, _ = rebuilt.embed_parts(batch)
    np.testing.assert_allclose(vectors, expected, atol=2e-3)


@pytest.mark.django_db
def test_the_report_shows_the_chosen_pull(admin_client):
    from recommendations.management.commands.adapt_embeddings import format_report
    from recommendations.models import Adaptation, EmbeddingSpace

    base = EmbeddingSpace.objects.create(encoder=ENCODER, weights_id="t", dimensions=4, state="active")
    run = Adaptation.objects.create(
        base_space=base,
        status=Adaptation.Status.ACTIVATED,
        report={
            "photos": 120,
            "base": {"category_precision@10": 0.5},
            "adapted": {"category_precision@10": 0.7},
            "pull": {"category": 0.5, "category_colour": 0.25},
        },
    )
    expected = "category 0.5, category + colour 0.25"
    assert expected in format_report(run)
    url = reverse("admin:recommendations_adaptation_change", args=[run.pk])
    assert f"prototype pull: {expected}" in admin_client.get(url).content.decode()
    assert adaptation.describe_pull({"category": 0.0, "category_colour": 0.0}) == "none"
