"""Catalog adaptation: learn an embedding space from the store's own catalog, validate it, activate it.

What the catalog knows becomes training labels, per photo (``adaptation_labels``):

- the product: several photos of one product are the strongest signal (a shopper wants them together);
- the category (the ``category`` role), the colour (the ``colour`` role, or a colour attribute), and the
  design its colourways share (the ``group`` role, or a design / style / item-group attribute).

Products with at least one label are split by design (else by product) into a training part and a held-out
validation part: no validation product, nor another colourway of its design, is trained on. The base space
and the adapted one are scored on the validation photos with the same metrics; the adapted space is
written and activated only when it is better. With too few labelled products, or no gain, the base space
stays and the report says why (``Adaptation.report``).

The CNN's trunk runs once over every photo (outputs cached on disk, float16); its tail and a projection
train on the cache (``adaptation_model``), and the adapted vectors of all photos come from the same cache.
The weights of the prototype pull (``adaptation_model``) are chosen on the validation photos too.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone

from lookalike import catalog
from recommendations import recipes, services
from recommendations.adaptation_labels import CatalogPhotos, Labels, catalog_photos, photo_labels
from recommendations.conf import app_setting
from recommendations.evaluation import exact_rankings, score_rankings
from recommendations.models import Adaptation, EmbeddingSpace, ImageEmbedding, SpaceWeights

logger = logging.getLogger(__name__)

# The adapted space must beat the base one by this much on the mean of the validation metrics, and lose no
# metric by more than MAX_LOSS: a space that trades one for another is not what a shopper was promised.
MIN_GAIN = 0.01
MAX_LOSS = 0.02
VALIDATION_K = 10
# Loss weights of the label columns: product, category, category + colour, colour (without a category).
# Category weighs most: on held-out fashion photos it raised same-kind precision without costing colour.
LABEL_WEIGHTS = (1.0, 3.0, 1.0, 1.0)
SAME_PRODUCT_K = 5
# Candidate weights of the prototype pull (category, category + colour), tried on the held-out products;
# the first with the best mean score wins, so no pull is kept when pulling does not help.
PULL_CATEGORY = (0.0, 0.25, 0.5, 1.0, 2.0)
PULL_CATEGORY_COLOUR = (0.0, 0.25, 0.5, 1.0)

Progress = Callable[[str], None]


def validation_metrics(vectors: np.ndarray, labels: Labels, rows: np.ndarray) -> dict[str, float]:
    """Scores of ``vectors`` (one per row of ``rows``) ranked among themselves: what a shopper would see.

    category@10 and category+colour@10 are precision; same_product@5 is the hit rate of another photo of
    the same product. A metric whose label no validation photo has is left out.
    """
    ids = [int(row) for row in rows]
    rankings = exact_rankings(ids, vectors, VALIDATION_K)
    results: dict[str, float] = {}
    for name, column, k, metric in (
        ("category_precision@10", labels.category, VALIDATION_K, "precision"),
        ("category_colour_precision@10", labels.category_colour, VALIDATION_K, "precision"),
        ("same_product_hit_rate@5", labels.product, SAME_PRODUCT_K, "hit_rate"),
    ):
        keys = {row: int(column[row]) for row in ids if column[row] >= 0}
        if len(keys) < 2:
            continue
        scored = {row: [other for other in rankings[row] if other in keys] for row in keys}
        evaluation = score_rankings(scored, keys, k)
        if evaluation.queries:
            results[name] = round(float(evaluation.micro[metric]), 4)
    return results


def choose_pull(
    model: Any, unpulled: np.ndarray, labels: Labels, rows: np.ndarray
) -> tuple[dict[str, float], dict[str, float]]:
    """Set ``model``'s prototype pull to the candidate weights that score best on the held-out ``rows``.

    ``unpulled`` holds their vectors before any pull. Returns the chosen weights and the scores with them.
    The category and category + colour proxies of training are the prototypes.
    """
    import torch

    category, category_colour = model.proxies[1], model.proxies[2]
    vectors = torch.from_numpy(np.ascontiguousarray(unpulled, dtype=np.float32))
    best: tuple[float, dict[str, float], dict[str, float]] | None = None
    for weight_category in PULL_CATEGORY:
        for weight_colour in PULL_CATEGORY_COLOUR:
            model.set_pull([(category, weight_category), (category_colour, weight_colour)])
            with torch.inference_mode():
                pulled = model.pull(vectors).numpy()
            scores = validation_metrics(pulled, labels, rows)
            mean = float(np.mean(list(scores.values()))) if scores else 0.0
            if best is None or mean > best[0] + 1e-9:
                weights = {"category": weight_category, "category_colour": weight_colour}
                best = (mean, weights, scores)
    assert best is not None
    _, weights, scores = best
    model.set_pull([(category, weights["category"]), (category_colour, weights["category_colour"])])
    return weights, scores


def describe_pull(pull: dict[str, float]) -> str:
    """Chosen pull weights in words, as the report shows them: "category 0.5, category + colour 0.25"."""
    parts = [f"{name.replace('_', ' + ')} {weight:g}" for name, weight in pull.items() if weight]
    return ", ".join(parts) or "none"


def decide(base: dict[str, float], adapted: dict[str, float]) -> tuple[bool, str]:
    names = [name for name in adapted if name in base]
    if not names:
        return False, "no validation metric could be computed (too few labelled products held out)"
    gain = float(np.mean([adapted[name] - base[name] for name in names]))
    worst = min(adapted[name] - base[name] for name in names)
    if gain >= MIN_GAIN and worst >= -MAX_LOSS:
        return True, f"the adapted space is better on held-out products (mean gain {gain:+.3f})"
    if gain < MIN_GAIN:
        return False, f"no gain on held-out products (mean {gain:+.3f}, needs {MIN_GAIN:+.3f})"
    return False, f"a metric got worse on held-out products ({worst:+.3f}, at most {-MAX_LOSS:+.3f} allowed)"


# --- the run ------------------------------------------------------------------------------------------------


def start_adaptation(*, options: dict[str, Any] | None = None) -> Adaptation:
    """Record an adaptation of the active space and queue it for an embedding worker."""
    from recommendations.tasks import adapt_embeddings_task

    base = services.get_active_space()
    if base is None:
        raise services.NoActiveSpace("No embedding space is active: embed the catalog first.")
    adaptation = Adaptation.objects.create(base_space=base, options=options or {})
    transaction.on_commit(lambda: adapt_embeddings_task.delay(adaptation.pk))
    return adaptation


def _set(adaptation: Adaptation, **values: Any) -> None:
    for name, value in values.items():
        setattr(adaptation, name, value)
    Adaptation.objects.filter(pk=adaptation.pk).update(**values)


def _trunk_outputs(
    photos: CatalogPhotos, torch_encoder: Any, trunk: Any, folder: Path, progress: Progress
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trunk outputs (float16 memmap), colour + pattern descriptors and a validity mask, for every photo."""
    import torch

    from recommendations import imaging
    from recommendations.recipe_encoder import batch_pixels, describe_batch

    storage = catalog.image_storage()
    mean, std = torch_encoder.normalisation
    count = len(photos.image_ids)
    maps: np.ndarray | None = None
    descriptors: np.ndarray | None = None
    valid = np.zeros(count, dtype=bool)

    def items() -> Any:
        for index, name in enumerate(photos.files):
            try:
                with storage.open(name, "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            yield index, data

    done = 0
    batches = imaging.iter_batches(
        items(),
        preprocess=torch_encoder.preprocess,
        batch_size=int(app_setting("BATCH_SIZE")),
        workers=int(app_setting("DECODE_WORKERS")),
        max_pixels=int(app_setting("MAX_IMAGE_PIXELS")),
    )
    for batch in batches:
        done += len(batch.keys) + len(batch.failures)
        if batch.tensor is None:
            continue
        with torch.inference_mode():
            output = trunk(batch.tensor.to(torch_encoder.device)).float().cpu().numpy()
        described = describe_batch(batch_pixels(batch.tensor, mean, std))
        if maps is None:
            maps = np.lib.format.open_memmap(
                folder / "maps.npy", mode="w+", dtype=np.float16, shape=(count, *output.shape[1:])
            )
            descriptors = np.zeros((count, described.shape[1]), dtype=np.float32)
        assert descriptors is not None
        rows = np.asarray(batch.keys)
        maps[rows] = output.astype(np.float16)
        descriptors[rows] = described
        valid[rows] = True
        progress(f"reading photos: {done:,} / {count:,}")
    if maps is None or descriptors is None:
        raise ValueError("No photo of the catalog could be read.")
    return maps, descriptors, valid


def run_adaptation(adaptation: Adaptation, *, progress: Progress | None = None) -> Adaptation:
    """Learn, validate and (when better) activate an adapted space; the outcome is on ``adaptation``."""
    from recommendations import adaptation_model, encoders
    from recommendations.recipe_encoder import dump_state

    started = time.perf_counter()
    options = {**adaptation.options}
    epochs = int(options.get("epochs") or app_setting("ADAPT_EPOCHS"))
    dimensions = int(options.get("dimensions") or app_setting("ADAPT_DIMENSIONS"))
    hidden = int(options.get("hidden") or app_setting("ADAPT_HIDDEN"))
    share = float(options.get("validation_share") or app_setting("ADAPT_VALIDATION_SHARE"))
    min_products = int(options.get("min_products") or app_setting("ADAPT_MIN_PRODUCTS"))

    def say(text: str) -> None:
        _set(adaptation, progress=text[:200])
        if progress is not None:
            progress(text)

    _set(adaptation, status=Adaptation.Status.RUNNING, message="", report={})
    base = adaptation.base_space
    if recipes.recipe_kind(base.recipe) == recipes.ADAPTED and base.base is not None:
        base_of_base = base.base
    else:
        base_of_base = base
    photos = catalog_photos()
    report: dict[str, Any] = {
        "base_space": base.pk,
        "photos": len(photos.image_ids),
        "products": len(set(photos.product_ids)),
        "products_with_category": len(photos.category),
        "products_with_colour": len(photos.colour),
        "products_with_design": len(photos.group),
    }
    torch_encoder = encoders.get_encoder(
        base_of_base.encoder, services.space_weights(base_of_base), app_setting("DEVICE")
    )
    with tempfile.TemporaryDirectory(prefix="lookalike-adapt-") as folder:
        trunk, tail = encoders.split_backbone(torch_encoder)
        trunk = trunk.to(torch_encoder.device).eval()
        maps, descriptors, valid = _trunk_outputs(photos, torch_encoder, trunk, Path(folder), say)
        labels = photo_labels(photos, valid, validation_share=share)
        labelled_products = {pk for pk, ok in zip(photos.product_ids, labels.labelled, strict=True) if ok}
        train_rows = np.flatnonzero(labels.labelled & ~labels.validation)
        validation_rows = np.flatnonzero(labels.labelled & labels.validation)
        report.update(
            labelled_products=len(labelled_products),
            training_photos=len(train_rows),
            validation_photos=len(validation_rows),
        )
        if len(labelled_products) < min_products or len(validation_rows) < 2 or len(train_rows) < 2:
            message = (
                f"Kept the base space: {len(labelled_products)} labelled products (at least {min_products} "
                "needed, with categories, colours or several photos per product)."
            )
            return _finish(adaptation, Adaptation.Status.KEPT_BASE, message, report, started)

        model = adaptation_model.AdaptedModel(
            trunk,
            tail,
            cnn_dimensions=int(torch_encoder.dimensions),
            descriptor_dimensions=descriptors.shape[1],
            hidden=hidden,
            dimensions=dimensions,
            trunk_channels=int(maps.shape[1]),
        )
        # Colour on its own would pull a red shirt towards red shoes: it is learned with the category where
        # both are known (category + colour), and alone only for products without a category.
        colour_only = np.where(labels.category < 0, labels.colour, -1)
        columns = [labels.product, labels.category, labels.category_colour, colour_only]
        data = adaptation_model.TrainingData(
            maps=maps, descriptors=descriptors, labels=columns, label_weights=LABEL_WEIGHTS
        )
        model = adaptation_model.train(
            model,
            data,
            train_rows,
            epochs=epochs,
            progress=lambda epoch, total, loss: say(f"training: epoch {epoch} / {total}, loss {loss:.3f}"),
        )
        base_vectors, covered = _base_vectors(base, [photos.image_ids[row] for row in validation_rows])
        report["validation_photos_scored"] = int(covered.sum())
        base_scores = validation_metrics(base_vectors[covered], labels, validation_rows[covered])
        unpulled = adaptation_model.embed_rows(model, data, validation_rows[covered], pulled=False)
        report["pull"], adapted_scores = choose_pull(model, unpulled, labels, validation_rows[covered])
        better, reason = decide(base_scores, adapted_scores)
        report.update(base=base_scores, adapted=adapted_scores, decision=reason)
        if not better:
            return _finish(
                adaptation, Adaptation.Status.KEPT_BASE, f"Kept the base space: {reason}.", report, started
            )
        if options.get("no_activate"):
            return _finish(
                adaptation,
                Adaptation.Status.KEPT_BASE,
                f"Not activated (--no-activate): {reason}.",
                report,
                started,
            )

        say("writing the adapted space")
        state = model.learned_state()
        blob = dump_state(state)
        recipe = {
            "kind": recipes.ADAPTED,
            "version": recipes.RECIPE_VERSION,
            "dimensions": dimensions,
            "hidden": hidden,
            "trunk_channels": model.trunk_channels,
            "pull": [[count, weight] for count, weight in model.pull_sets],
            "descriptor": recipes.descriptor_layout(),
            "base_space": base.pk,
            "state_sha256": hashlib.sha256(blob).hexdigest()[:16],
        }
        space = EmbeddingSpace.objects.create(
            encoder=base_of_base.encoder,
            weights_id=base_of_base.weights_id,
            recipe=recipe,
            recipe_id=recipes.recipe_id(recipe),
            dimensions=dimensions,
            base=base_of_base,
            state=EmbeddingSpace.State.BUILDING,
        )
        SpaceWeights.objects.create(space=space, data=blob)
        all_rows = np.flatnonzero(valid)
        _write_space(
            space, photos, all_rows, adaptation_model.embed_rows(model, data, all_rows), descriptors, valid
        )
        say("building the index and activating")
        services.activate_space(space)
        _set(adaptation, space=space)
        return _finish(
            adaptation, Adaptation.Status.ACTIVATED, f"Activated space {space.pk}: {reason}.", report, started
        )


def _base_vectors(space: EmbeddingSpace, image_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    from recommendations.selectors import image_vectors

    found = image_vectors(image_ids, space=space)
    covered = np.asarray([image_id in found for image_id in image_ids], dtype=bool)
    vectors = np.zeros((len(image_ids), space.dimensions), dtype=np.float32)
    for row, image_id in enumerate(image_ids):
        if covered[row]:
            vectors[row] = found[image_id]
    return vectors, covered


def _write_space(
    space: EmbeddingSpace,
    photos: CatalogPhotos,
    rows: np.ndarray,
    vectors: np.ndarray,
    descriptors: np.ndarray,
    valid: np.ndarray,
) -> None:
    # The digests the base space recorded: embed_images then knows these photos are done in this space too.
    digests = dict(
        ImageEmbedding.objects.filter(space=space.base, image_id__in=photos.image_ids).values_list(
            "image_id", "sha256"
        )
    )
    chunk = 2000
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        items = [
            services.EmbeddedImage(
                photos.image_ids[row], photos.product_ids[row], digests.get(photos.image_ids[row], "")
            )
            for row in part.tolist()
        ]
        with transaction.atomic():
            services.write_image_vectors(space, items, vectors[start : start + chunk], descriptors[part])
            services.update_product_vectors({item.product_id for item in items}, space)
    failed = [
        (
            services.EmbeddedImage(photos.image_ids[row], photos.product_ids[row], ""),
            "the photo could not be read",
        )
        for row in np.flatnonzero(~valid).tolist()
    ]
    if failed:
        with transaction.atomic():
            services.write_image_vectors(
                space, [], np.zeros((0, space.dimensions), np.float32), None, failures=failed
            )


def record_failure(adaptation_id: int, error: BaseException) -> None:
    """A run that broke: the reason where the admin reads it; the base space stays active."""
    Adaptation.objects.filter(pk=adaptation_id).update(
        status=Adaptation.Status.FAILED, message=f"{type(error).__name__}: {error}"[:2000], progress=""
    )


def _finish(
    adaptation: Adaptation, status: str, message: str, report: dict[str, Any], started: float
) -> Adaptation:
    report["seconds"] = round(time.perf_counter() - started, 1)
    _set(adaptation, status=status, message=message, report=report, finished_at=timezone.now(), progress="")
    logger.info("Adaptation %s: %s", adaptation.pk, message)
    return adaptation
