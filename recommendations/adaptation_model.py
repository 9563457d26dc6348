"""The learned part of an adapted space: a fine-tuned CNN tail and a projection. Torch only, no Django.

Training (``train``) sees cached trunk outputs of the catalog's photos, their colour + pattern descriptors
and label columns (product, category, colour, ...). Each label column gets a cosine classifier with an
additive margin over the normalised output (a proxy per label value): photos of one product are pulled to
one point, products of one category and colour to one region, and the rest apart. After training, the
tail and the projection are kept, and of the classifiers only the weights that serve as the prototypes of
the pull below.

Two additions carry what frozen ImageNet features lose at the end of the network:

- the trunk's own output, pooled, enters the projection beside the tail's: its mid-level channels still
  hold colour and texture that the last blocks abstract away;
- after projection, a vector is pulled towards the category (and category + colour) prototypes it
  resembles: ``v + w * normalise(softmax(s * v @ P.T) @ P)``. A new product without a label then sits
  near the products of the category the catalog taught, which a nearest-neighbour search alone does not
  reach for the rare categories. The pull weights are chosen on held-out products (``adaptation``) and
  recorded in the recipe; a pull costs a little same-product precision, so a catalog whose validation
  says so gets none.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

# Scale and additive margin of the cosine classifiers (CosFace); standard values for metric learning.
LOGIT_SCALE = 16.0
MARGIN = 0.1
# The CNN part enters the projection as a unit vector times this, so it weighs like the standardised
# descriptor columns do.
CNN_INPUT_SCALE = 8.0
# Sharpness of the prototype pull: a softmax over cosine similarities. Measured on held-out fashion photos
# (frozen-feature runs): 8 pulled rare categories together better than 16-64, which snap to one prototype.
PULL_SCALE = 8.0


class AdaptedModel(nn.Module):
    descriptor_mean: torch.Tensor
    descriptor_std: torch.Tensor
    trunk_mean: torch.Tensor
    trunk_std: torch.Tensor
    prototypes: torch.Tensor

    def __init__(
        self,
        trunk: nn.Module,
        tail: nn.Module,
        *,
        cnn_dimensions: int,
        descriptor_dimensions: int,
        hidden: int,
        dimensions: int,
        trunk_channels: int = 0,
        pull: Sequence[Sequence[float]] = (),
    ) -> None:
        super().__init__()
        self.trunk = trunk.eval().requires_grad_(False)
        self.tail = tail
        self.cnn_dimensions = cnn_dimensions
        self.dimensions = dimensions
        self.trunk_channels = trunk_channels
        self.project = nn.Sequential(
            nn.Dropout(0.2),
            nn.Linear(cnn_dimensions + trunk_channels + descriptor_dimensions, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, dimensions),
        )
        self.register_buffer("descriptor_mean", torch.zeros(descriptor_dimensions))
        self.register_buffer("descriptor_std", torch.ones(descriptor_dimensions))
        if trunk_channels:
            self.register_buffer("trunk_mean", torch.zeros(trunk_channels))
            self.register_buffer("trunk_std", torch.ones(trunk_channels))
        # (count, weight) per prototype set, the sets stacked in one buffer.
        self.pull_sets = [(int(count), float(weight)) for count, weight in pull]
        self.register_buffer("prototypes", torch.zeros(sum(count for count, _ in self.pull_sets), dimensions))
        self.proxies: list[torch.Tensor] = []  # per label column, after training

    @classmethod
    def from_state(cls, base: Any, recipe: Mapping[str, Any], state: Mapping[str, Any]) -> AdaptedModel:
        from recommendations.encoders import split_backbone

        trunk, tail = split_backbone(base)
        model = cls(
            trunk,
            tail,
            cnn_dimensions=int(base.dimensions),
            descriptor_dimensions=int(recipe["descriptor"]["colour"]) + int(recipe["descriptor"]["pattern"]),
            hidden=int(recipe["hidden"]),
            dimensions=int(recipe["dimensions"]),
            # Spaces adapted before these parts existed have neither key and load as they were.
            trunk_channels=int(recipe.get("trunk_channels", 0)),
            pull=recipe.get("pull", ()),
        )
        missing, unexpected = model.load_state_dict(dict(state), strict=False)
        missing = [name for name in missing if not name.startswith("trunk.")]
        if missing or unexpected:
            raise ValueError(f"Adapted weights do not fit: missing {missing}, unexpected {unexpected}")
        return model.to(base.device).eval()

    def learned_state(self) -> dict[str, torch.Tensor]:
        """Everything but the trunk (which is the pretrained encoder's own): what a space stores."""
        return {
            name: tensor.detach().cpu().clone()
            for name, tensor in self.state_dict().items()
            if not name.startswith("trunk.")
        }

    def set_pull(self, sets: Sequence[tuple[torch.Tensor, float]]) -> None:
        """Prototype sets (unit rows) and their weights; sets weighing 0 are dropped."""
        kept = [(prototypes, float(weight)) for prototypes, weight in sets if weight > 0 and len(prototypes)]
        self.pull_sets = [(len(prototypes), weight) for prototypes, weight in kept]
        self.prototypes = (
            torch.cat([prototypes.float() for prototypes, _ in kept])
            if kept
            else torch.zeros(0, self.dimensions)
        )

    def pull(self, vectors: torch.Tensor) -> torch.Tensor:
        """Unit vectors pulled towards the prototypes they resemble (unchanged without prototypes)."""
        if not self.pull_sets:
            return vectors
        pulled = vectors
        start = 0
        for count, weight in self.pull_sets:
            prototypes = self.prototypes[start : start + count].to(vectors.dtype)
            start += count
            mixture = F.softmax(PULL_SCALE * (vectors @ prototypes.T), dim=1) @ prototypes
            pulled = pulled + weight * F.normalize(mixture, dim=1)
        return F.normalize(pulled, dim=1)

    def head_unpulled(self, maps: torch.Tensor, descriptors: torch.Tensor) -> torch.Tensor:
        """Trunk outputs + descriptors -> unit vectors, before the prototype pull (what training sees)."""
        parts = [F.normalize(self.tail(maps).flatten(1), dim=1) * CNN_INPUT_SCALE]
        if self.trunk_channels:
            parts.append((maps.mean((2, 3)) - self.trunk_mean) / self.trunk_std)
        parts.append((descriptors - self.descriptor_mean) / self.descriptor_std)
        return F.normalize(self.project(torch.cat(parts, dim=1)), dim=1)

    def head(self, maps: torch.Tensor, descriptors: torch.Tensor) -> torch.Tensor:
        """Trunk outputs + descriptors -> unit vectors."""
        return self.pull(self.head_unpulled(maps, descriptors))

    def embed(self, batch: torch.Tensor, descriptors: np.ndarray) -> np.ndarray:
        device = next(self.project.parameters()).device
        with torch.inference_mode():
            maps = self.trunk(batch.to(device).contiguous(memory_format=torch.channels_last))
            vectors = self.head(maps.float(), torch.from_numpy(descriptors).to(device))
        return vectors.float().cpu().numpy()


@dataclass
class TrainingData:
    maps: np.ndarray  # (n, ...) float16 trunk outputs, e.g. a memmap
    descriptors: np.ndarray  # (n, descriptor dims) float32
    labels: Sequence[np.ndarray]  # per label column: (n,) int class ids, -1 where unknown
    label_weights: Sequence[float]


def _batch_maps(maps: np.ndarray, rows: np.ndarray) -> torch.Tensor:
    order = np.argsort(rows)
    block = np.asarray(maps[rows[order]], dtype=np.float32)  # sorted reads: a memmap reads sequentially
    restored = np.empty_like(block)
    restored[order] = block
    return torch.from_numpy(restored)


def _pooled_maps(maps: np.ndarray, rows: np.ndarray, chunk: int = 512) -> torch.Tensor:
    """Spatial means of the cached trunk outputs of ``rows``, read a chunk at a time."""
    pooled = [
        torch.from_numpy(
            np.asarray(maps[np.sort(rows[start : start + chunk])], dtype=np.float32).mean((2, 3))
        )
        for start in range(0, len(rows), chunk)
    ]
    return torch.cat(pooled) if pooled else torch.zeros(0, maps.shape[1])


def train(
    model: AdaptedModel,
    data: TrainingData,
    rows: np.ndarray,
    *,
    epochs: int,
    batch_size: int = 64,
    tail_lr: float = 3e-4,
    head_lr: float = 2e-3,
    seed: int = 0,
    progress: Callable[[int, int, float], None] | None = None,
) -> AdaptedModel:
    """Fine-tune ``model``'s tail and projection on the training ``rows`` of ``data``."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    descriptors = torch.from_numpy(np.asarray(data.descriptors, dtype=np.float32))
    train_descriptors = descriptors[torch.from_numpy(rows)]
    model.descriptor_mean.copy_(train_descriptors.mean(0))
    model.descriptor_std.copy_(train_descriptors.std(0) + 1e-3)
    if model.trunk_channels:
        pooled = _pooled_maps(data.maps, rows)
        model.trunk_mean.copy_(pooled.mean(0))
        model.trunk_std.copy_(pooled.std(0) + 1e-3)
    dimensions = model.dimensions
    labels = [torch.from_numpy(np.asarray(column, dtype=np.int64)) for column in data.labels]
    proxies = nn.ParameterList(
        [
            nn.Parameter(torch.randn(int(column.max()) + 1, dimensions, generator=generator) * 0.01)
            for column in labels
        ]
    )
    tail_parameters = [p for p in model.tail.parameters()]
    for parameter in tail_parameters:
        parameter.requires_grad_(True)
    head_parameters = [*model.project.parameters(), *proxies.parameters()]
    optimiser = torch.optim.AdamW(
        [{"params": tail_parameters, "lr": tail_lr}, {"params": head_parameters, "lr": head_lr}],
        weight_decay=1e-4,
    )
    steps_per_epoch = math.ceil(len(rows) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=[tail_lr, head_lr], total_steps=max(1, epochs * steps_per_epoch)
    )
    started = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        # Batch norm keeps the pretrained statistics: small batches of one catalog would skew them.
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        order = rows[torch.randperm(len(rows), generator=generator).numpy()]
        loss_value = 0.0
        for start in range(0, len(order), batch_size):
            batch_rows = order[start : start + batch_size]
            if len(batch_rows) < 2:
                continue
            maps = _batch_maps(data.maps, batch_rows)
            # Mirrored photos are the same product: a free augmentation of the cached maps.
            flip = torch.rand(len(batch_rows), generator=generator) < 0.5
            maps[flip] = maps[flip].flip(-1)
            index = torch.from_numpy(batch_rows)
            output = model.head_unpulled(maps, descriptors[index])
            loss = output.new_zeros(())
            for column, weights, weight in zip(labels, proxies, data.label_weights, strict=True):
                target = column[index]
                known = target >= 0
                if not bool(known.any()):
                    continue
                logits = output[known] @ F.normalize(weights, dim=1).T
                logits = logits - MARGIN * F.one_hot(target[known], weights.shape[0])
                loss = loss + weight * F.cross_entropy(LOGIT_SCALE * logits, target[known])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            loss_value = float(loss.detach())
        if progress is not None:
            progress(epoch + 1, epochs, loss_value)
    model.eval()
    model.tail.requires_grad_(False)
    model.proxies = [F.normalize(weights.detach(), dim=1) for weights in proxies]
    model.training_seconds = time.perf_counter() - started  # type: ignore[assignment]
    return model


def embed_rows(
    model: AdaptedModel, data: TrainingData, rows: np.ndarray, batch_size: int = 256, *, pulled: bool = True
) -> np.ndarray:
    """Adapted vectors of ``rows`` from their cached trunk outputs (``pulled=False``: before the pull)."""
    outputs = []
    descriptors = torch.from_numpy(np.asarray(data.descriptors, dtype=np.float32))
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            maps = _batch_maps(data.maps, chunk)
            head = model.head if pulled else model.head_unpulled
            outputs.append(head(maps, descriptors[torch.from_numpy(chunk)]).numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, model.dimensions), np.float32)
