"""Offline evaluation of personalisation on vectors held in memory (no Django, no database).

Two experiments, both driven by the same pure selection functions the pages use (``recommendations.profiles``
through :func:`select_round`):

* target finding: a simulated shopper has a hidden target product and, each round, picks the shown product
  closest to it (by a *judge*); we count rounds until the target is shown;
* leave-last-out: sessions of a shopper browsing one articleType/colour are built from labels, the last item
  is held out and the ranking of the remaining catalog is scored with ``recommendations.metrics``.

The Myntra photo set is embedded once per encoder and cached under ``var/cache/personalisation/``.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recommendations import metrics, profiles

CACHE_DIR = Path(__file__).resolve().parent.parent / "var" / "cache" / "personalisation"


# --- The labelled photo set -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelledVectors:
    """One row per distinct photo: ids, unit vectors and the labels the independent judge reads."""

    ids: np.ndarray  # (n,) int64, the Myntra ids
    vectors: np.ndarray  # (n, d) float32, rows L2-normalised
    article_types: np.ndarray  # (n,) str
    colours: np.ndarray  # (n,) str
    encoder: str
    weights_id: str

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: np.ndarray) -> LabelledVectors:
        return LabelledVectors(
            ids=self.ids[rows],
            vectors=self.vectors[rows],
            article_types=self.article_types[rows],
            colours=self.colours[rows],
            encoder=self.encoder,
            weights_id=self.weights_id,
        )


def read_myntra_labels(data_dir: Path) -> list[dict[str, str]]:
    """The label rows of ``<data_dir>/myntra``, byte-identical photos (same md5) dropped, sorted by id."""
    with open(data_dir / "myntra" / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    seen: set[str] = set()
    distinct = []
    for row in sorted(rows, key=lambda r: int(r["id"])):
        if row["md5"] not in seen:
            seen.add(row["md5"])
            distinct.append(row)
    return distinct


def load_myntra_vectors(
    data_dir: Path,
    *,
    encoder_key: str = "efficientnet_lite0",
    weights: str = "DEFAULT",
    cache_dir: Path = CACHE_DIR,
    limit: int | None = None,
    batch_size: int = 64,
    num_threads: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> LabelledVectors:
    """Embed the Myntra photos with a real encoder, or load the vectors cached by an earlier run.

    The cache file is named after the encoder, its weights and a digest of the label file, so a changed
    photo set or encoder never reuses stale vectors. Embedding all ~4,900 distinct photos takes a few minutes
    on two CPU cores; later runs load the cache in well under a second.
    """
    rows = read_myntra_labels(data_dir)
    if limit is not None:
        rows = rows[:limit]
    digest = hashlib.sha256(("\n".join(r["md5"] for r in rows)).encode()).hexdigest()[:12]
    cache_path = cache_dir / f"myntra-{encoder_key}-{weights.replace('/', '_')}-{digest}.npz"
    if cache_path.exists():
        cached = np.load(cache_path, allow_pickle=False)
        vectors, weights_id = cached["vectors"], str(cached["weights_id"])
    else:
        vectors, weights_id = _embed_photos(
            [data_dir / "myntra" / "images" / r["image"] for r in rows],
            encoder_key=encoder_key,
            weights=weights,
            batch_size=batch_size,
            num_threads=num_threads,
            progress=progress,
        )
        cache_dir.mkdir(parents=True, exist_ok=True)
        temporary = cache_path.with_suffix(".tmp.npz")
        np.savez(temporary, vectors=vectors, weights_id=np.asarray(weights_id))
        temporary.replace(cache_path)  # a run killed mid-write leaves no half-written cache behind
    return LabelledVectors(
        ids=np.asarray([int(r["id"]) for r in rows], dtype=np.int64),
        vectors=vectors.astype(np.float32, copy=False),
        article_types=np.asarray([r["articleType"] for r in rows]),
        colours=np.asarray([r["baseColour"] for r in rows]),
        encoder=encoder_key,
        weights_id=weights_id,
    )


def _embed_photos(
    paths: Sequence[Path],
    *,
    encoder_key: str,
    weights: str,
    batch_size: int,
    num_threads: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[np.ndarray, str]:
    import torch
    from PIL import Image

    from recommendations.encoders import build_encoder

    encoder = build_encoder(encoder_key, weights=weights, device="cpu", num_threads=num_threads)

    def load(path: Path) -> torch.Tensor:
        with Image.open(path) as image:
            return encoder.preprocess(image.convert("RGB"))

    chunks = []
    # One decoding thread keeps the next batch ready while torch uses the cores for the current one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
        pending = pool.submit(lambda b: [load(p) for p in b], batches[0]) if batches else None
        for index in range(len(batches)):
            assert pending is not None
            tensors = pending.result()
            if index + 1 < len(batches):
                pending = pool.submit(lambda b: [load(p) for p in b], batches[index + 1])
            chunks.append(encoder.embed_tensors(torch.stack(tensors)))
            if progress:
                progress(min((index + 1) * batch_size, len(paths)), len(paths))
    return np.concatenate(chunks).astype(np.float32), encoder.weights_id
