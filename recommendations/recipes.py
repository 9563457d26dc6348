"""Recipes: how an image becomes the one vector an embedding space stores.

- ``{}`` (the CNN alone): the encoder's pooled features. Spaces made before recipes existed have it.
- ``combined``: the CNN's features, the colour of the product (a CIELAB histogram of the pixels that are not
  background) and its pattern (``recommendations.colour``), each L2-normalised, weighted and concatenated.
  A cosine between two such vectors is the weighted sum of the three cosines, so a navy checked shirt is
  closest to navy checked shirts, not to any checked top.
- ``adapted``: learned from the store's own catalog by ``manage.py adapt_embeddings``
  (``recommendations.adaptation``): the CNN's last blocks fine-tuned and a projection to fewer dimensions.
  Its weights live on the space (``EmbeddingSpace.model_state``), so every worker rebuilds the same encoder.

A recipe is plain JSON recorded on the space; ``recipe_id`` is its digest, part of the space's identity.
This module is torch-free (the web tier and system checks read it); ``recipe_encoder`` builds encoders.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from recommendations import colour
from recommendations.conf import DEFAULTS
from recommendations.encoder_registry import ENCODER_INFO

RECIPE_VERSION = 1
CNN = "cnn"
COMBINED = "combined"
ADAPTED = "adapted"
KINDS = (CNN, COMBINED, ADAPTED)


def combined_recipe(part_weights: Mapping[str, float] | None = None) -> dict[str, Any]:
    """A combined recipe; parts missing from ``part_weights`` get RECOMMENDATIONS['RECIPE_WEIGHTS']'s
    defaults (squared, the weights are each part's share of the cosine)."""
    weights = {**DEFAULTS["RECIPE_WEIGHTS"], **(part_weights or {})}
    return {
        "kind": COMBINED,
        "version": RECIPE_VERSION,
        "weights": {name: float(weights[name]) for name in ("cnn", "colour", "pattern")},
        "descriptor": descriptor_layout(),
    }


def descriptor_layout() -> dict[str, Any]:
    """The colour descriptor's bins: a space records them, so a later change of defaults cannot mix."""
    return {
        "side": colour.SIDE,
        "l_bins": colour.L_BINS,
        "ab_bins": colour.AB_BINS,
        "colour": colour.COLOUR_DIMENSIONS,
        "pattern": colour.PATTERN_DIMENSIONS,
    }


def recipe_kind(recipe: Mapping[str, Any] | None) -> str:
    return str((recipe or {}).get("kind", CNN))


def recipe_id(recipe: Mapping[str, Any] | None) -> str:
    """ "" for the CNN alone (the spaces made before recipes), else a digest of the recipe's JSON."""
    if not recipe or recipe_kind(recipe) == CNN:
        return ""
    text = json.dumps(recipe, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def recipe_dimensions(encoder_key: str, recipe: Mapping[str, Any] | None) -> int:
    kind = recipe_kind(recipe)
    if kind == CNN:
        return ENCODER_INFO[encoder_key].dimensions
    assert recipe is not None
    if kind == COMBINED:
        layout = recipe["descriptor"]
        return ENCODER_INFO[encoder_key].dimensions + int(layout["colour"]) + int(layout["pattern"])
    return int(recipe["dimensions"])


def descriptor_dimensions(recipe: Mapping[str, Any] | None) -> int:
    """Dimensions of the colour + pattern descriptor stored beside the vector; 0 when the recipe has none."""
    if recipe_kind(recipe) == CNN:
        return 0
    assert recipe is not None
    layout = recipe["descriptor"]
    return int(layout["colour"]) + int(layout["pattern"])


def check_descriptor_layout(recipe: Mapping[str, Any]) -> None:
    if recipe.get("descriptor") != descriptor_layout():
        raise ValueError(
            f"The space's colour descriptor {recipe.get('descriptor')} differs from this version's "
            f"{descriptor_layout()}: embed the catalog into a new space."
        )


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def combine(cnn: np.ndarray, descriptors: np.ndarray, weights: Mapping[str, float]) -> np.ndarray:
    """The combined vector: weighted unit parts, concatenated and normalised again."""
    colour_part = descriptors[:, : colour.COLOUR_DIMENSIONS]
    pattern_part = descriptors[:, colour.COLOUR_DIMENSIONS :]
    parts = [
        float(weights["cnn"]) * _unit(cnn),
        float(weights["colour"]) * _unit(colour_part),
        float(weights["pattern"]) * _unit(pattern_part),
    ]
    return _unit(np.concatenate(parts, axis=1)).astype(np.float32)
