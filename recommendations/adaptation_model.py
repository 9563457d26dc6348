"""The learned part of an adapted space: a fine-tuned CNN tail and a projection. Torch only, no Django.

Training (``train``) sees cached trunk outputs of the catalog's photos, their colour + pattern descriptors
and label columns (product, category, colour, ...). Each label column gets a cosine classifier with an
additive margin over the normalised output (a proxy per label value): photos of one product are pulled to
one point, products of one category and colour to one region, and the rest apart. The classifiers are
thrown away after training; only the tail and the projection are kept.
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


class AdaptedModel(nn.Module):
    descriptor_mean: torch.Tensor
    descriptor_std: torch.Tensor

    def __init__(
        self,
        trunk: nn.Module,
        tail: nn.Module,
        *,
        cnn_dimensions: int,
        descriptor_dimensions: int,
        hidden: int,
        dimensions: int,
    ) -> None:
        super().__init__()
        self.trunk = trunk.eval().requires_grad_(False)
        self.tail = tail
        self.cnn_dimensions = cnn_dimensions
        self.dimensions = dimensions
        self.project = nn.Sequential(
            nn.Dropout(0.2),
            nn.Linear(cnn_dimensions + descriptor_dimensions, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, dimensions),
        )
        self.register_buffer("descriptor_mean", torch.zeros(descriptor_dimensions))
        self.register_buffer("descriptor_std", torch.ones(descriptor_dimensions))

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

    def head(self, maps: torch.Tensor, descriptors: torch.Tensor) -> torch.Tensor:
        """Trunk outputs + descriptors -> unit vectors."""
        cnn = F.normalize(self.tail(maps).flatten(1), dim=1) * CNN_INPUT_SCALE
        side = (descriptors - self.descriptor_mean) / self.descriptor_std
        return F.normalize(self.project(torch.cat([cnn, side], dim=1)), dim=1)

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
            output = model.head(maps, descriptors[index])
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
    model.training_seconds = time.perf_counter() - started  # type: ignore[assignment]
    return model


def embed_rows(
    model: AdaptedModel, data: TrainingData, rows: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """Adapted vectors of ``rows`` from their cached trunk outputs."""
    outputs = []
    descriptors = torch.from_numpy(np.asarray(data.descriptors, dtype=np.float32))
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            maps = _batch_maps(data.maps, chunk)
            outputs.append(model.head(maps, descriptors[torch.from_numpy(chunk)]).numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, model.dimensions), np.float32)
