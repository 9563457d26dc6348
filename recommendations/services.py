"""Writes of the embedding pipeline: embedding spaces, image and product vectors, query-image vectors.

The web tier imports this module (receivers → tasks → services) and must not pay for torch: the modules
that load it (``encoders``, ``imaging``) are imported inside the functions that run a model.

An embedding space is one encoder with one set of weights. Exactly one is active (queried); a new one is
filled in state "building" while queries keep using the active one, and is activated in one transaction
once every stored catalog image has a vector (or a recorded failure) in it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from django.db import connection, models, transaction
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from lookalike import catalog
from recommendations import recipes
from recommendations.conf import app_setting
from recommendations.models import EmbeddingSpace, ImageEmbedding, ProductEmbedding, SpaceWeights

if TYPE_CHECKING:
    from recommendations.encoders import Encoder

logger = logging.getLogger(__name__)

# Threads reading image files from storage: several, because remote storages (S3) answer slowly.
READ_THREADS = 4
# A re-embedding whose missing count has not gone down for this many polls lost tasks: queue the rest again.
STALLED_POLLS_BEFORE_REQUEUE = 3

_FAILURE_REASON_MAX_CHARS = ImageEmbedding._meta.get_field("failure_reason").max_length or 500


class NoActiveSpace(RuntimeError):
    """No embedding space is active: the catalog has not been embedded yet (``manage.py embed_catalog``)."""


@dataclass
class EmbedReport:
    """What one embedding run did. Counts are per (image, space)."""

    embedded: int = 0  # images that have a vector now, ``reused`` included
    reused: int = 0  # vectors copied from another image with the same bytes instead of being computed
    skipped: int = 0  # already embedded (or already failed) from the same bytes
    unavailable: int = 0  # ids that no longer exist or have no file yet
    failed: list[tuple[int, str]] = field(default_factory=list)  # (image id, reason)
    seconds: float = 0.0

    @property
    def done(self) -> int:
        return self.embedded + self.skipped + len(self.failed)

    def add(self, other: EmbedReport) -> None:
        self.embedded += other.embedded
        self.reused += other.reused
        self.skipped += other.skipped
        self.unavailable += other.unavailable
        self.failed.extend(other.failed)
        self.seconds += other.seconds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- spaces ----------------------------------------------------------------------------------------------


def get_active_space() -> EmbeddingSpace | None:
    return EmbeddingSpace.objects.active().first()


def live_spaces() -> list[EmbeddingSpace]:
    """The spaces new images are embedded into: the active one first, then any being built."""
    spaces = EmbeddingSpace.objects.filter(
        state__in=[EmbeddingSpace.State.ACTIVE, EmbeddingSpace.State.BUILDING]
    )
    return sorted(spaces, key=lambda space: (space.state != EmbeddingSpace.State.ACTIVE, space.created_at))


# Spaces store the weights' id ("IMAGENET1K_V2", "file:1a2b3c4d5e6f"), not where the weights came from.
_weights_by_space: dict[tuple[str, str], str] = {}


def configured_recipe(name: str | None = None) -> dict[str, Any]:
    """The recipe new spaces are made with: ``name`` or RECOMMENDATIONS['RECIPE'] ("combined" or "cnn")."""
    if (name or app_setting("RECIPE")) == recipes.CNN:
        return {}
    return recipes.combined_recipe(app_setting("RECIPE_WEIGHTS"))


def get_or_create_space(
    encoder_key: str, weights: str, *, recipe: dict[str, Any] | None = None
) -> EmbeddingSpace:
    """The space of this encoder, weights and recipe (created in state "building"); nothing is loaded or
    downloaded. ``recipe`` None: the configured one.

    Raises encoders.UnknownEncoder or encoders.EncoderWeightsUnavailable for weights that cannot exist.
    """
    from recommendations import encoders

    recipe = configured_recipe() if recipe is None else recipe
    weights_id = encoders.weights_id_for(encoder_key, weights)
    space, _ = EmbeddingSpace.objects.get_or_create(
        encoder=encoder_key,
        weights_id=weights_id,
        recipe_id=recipes.recipe_id(recipe),
        defaults={
            "dimensions": recipes.recipe_dimensions(encoder_key, recipe),
            "recipe": recipe,
            "state": EmbeddingSpace.State.BUILDING,
        },
    )
    _weights_by_space[(space.encoder, space.weights_id)] = str(weights)
    return space


def prepare_space(encoder_key: str, weights: str, *, recipe: dict[str, Any] | None = None) -> EmbeddingSpace:
    """The space to fill for this encoder, weights and recipe (None: the configured one): a retired one is
    building again, and with no active space at all it is activated at once (a first space has no older
    results to stay consistent with)."""
    space = get_or_create_space(encoder_key, weights, recipe=recipe)
    if space.state == EmbeddingSpace.State.RETIRED:
        EmbeddingSpace.objects.filter(pk=space.pk).update(state=EmbeddingSpace.State.BUILDING)
        space.state = EmbeddingSpace.State.BUILDING
    if space.state == EmbeddingSpace.State.BUILDING and not EmbeddingSpace.objects.active().exists():
        space = activate_space(space)
    return space


def activate_space(space: EmbeddingSpace) -> EmbeddingSpace:
    """Make ``space`` the one queries use; the previously active space is retired in the same transaction."""
    from recommendations.indexes import ensure_space_index

    with _activation_lock():  # the last two chunk tasks of a re-embedding may finish at the same moment
        # Built before the switch (a partial index on this space's rows), so the first query after it is
        # fast; concurrently when possible, as a live shop keeps writing vectors of other spaces meanwhile.
        ensure_space_index(space, concurrently=not connection.in_atomic_block)
        _switch_active_space(space)
    space.refresh_from_db()
    logger.info("Embedding space %s is active", space)
    return space


@contextlib.contextmanager
def _activation_lock() -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtext('recommendations.activate_space'))")
        try:
            yield
        finally:
            cursor.execute("SELECT pg_advisory_unlock(hashtext('recommendations.activate_space'))")


def _switch_active_space(space: EmbeddingSpace) -> None:
    with transaction.atomic():
        # Row locks on both spaces: two activations at once end with one active space, not an error.
        list(
            EmbeddingSpace.objects.select_for_update()
            .filter(Q(state=EmbeddingSpace.State.ACTIVE) | Q(pk=space.pk))
            .order_by("pk")
        )
        if EmbeddingSpace.objects.filter(pk=space.pk, state=EmbeddingSpace.State.ACTIVE).exists():
            return
        EmbeddingSpace.objects.active().update(state=EmbeddingSpace.State.RETIRED)
        EmbeddingSpace.objects.filter(pk=space.pk).update(
            state=EmbeddingSpace.State.ACTIVE, activated_at=timezone.now()
        )


def space_weights(space: EmbeddingSpace) -> str:
    """The RECOMMENDATIONS['WEIGHTS'] value that rebuilds the space's encoder.

    Tried in order: what this process created the space with, "random", the encoder's pretrained names,
    the configured WEIGHTS. A space made from a weights file that is not configured here cannot be rebuilt.
    """
    from recommendations import encoders

    key = (space.encoder, space.weights_id)
    if key in _weights_by_space:
        return _weights_by_space[key]
    for candidate in ("random", space.weights_id, "DEFAULT", str(app_setting("WEIGHTS"))):
        try:
            if encoders.weights_id_for(space.encoder, candidate) == space.weights_id:
                _weights_by_space[key] = candidate
                return candidate
        except (encoders.EncoderWeightsUnavailable, encoders.UnknownEncoder, KeyError):
            continue
    raise encoders.EncoderWeightsUnavailable(
        f"Embedding space {space.pk} ({space.encoder}, weights {space.weights_id}) was made with weights "
        f"that RECOMMENDATIONS['WEIGHTS'] = {app_setting('WEIGHTS')!r} does not match: set it to the "
        f"weights file of that space on this machine."
    )


_torch_threads_set = False


def encoder_for_space(space: EmbeddingSpace, *, weights: str | None = None) -> Encoder:
    """The space's encoder, built once per process on first use (never at import time).

    A space with a recipe gets a ``recipe_encoder.RecipeEncoder`` around the backbone: combined vectors,
    or the adapted model whose weights are read from the space.
    """
    global _torch_threads_set
    from recommendations import encoders

    threads = app_setting("TORCH_THREADS")
    if threads and not _torch_threads_set:
        import torch

        torch.set_num_threads(int(threads))  # process-wide: once, before the first model runs
        _torch_threads_set = True
    weights = weights or space_weights(space)
    encoder = encoders.get_encoder(space.encoder, weights, app_setting("DEVICE"))
    if encoder.weights_id != space.weights_id:
        raise encoders.EncoderWeightsUnavailable(
            f"Weights {weights!r} give {encoder.key} weights {encoder.weights_id}, but embedding space "
            f"{space.pk} was made with {space.weights_id}."
        )
    if not space.recipe_id:
        return encoder
    key = (space.pk, space.recipe_id, str(encoder.device))
    with _recipe_encoders_lock:
        if key not in _recipe_encoders:
            from recommendations.recipe_encoder import RecipeEncoder, load_state

            state = None
            if recipes.recipe_kind(space.recipe) == recipes.ADAPTED:
                data = SpaceWeights.objects.filter(space=space).values_list("data", flat=True).first()
                state = load_state(data)
            _recipe_encoders[key] = RecipeEncoder(encoder, space.recipe, state)
        return _recipe_encoders[key]


_recipe_encoders: dict[tuple[int, str, str], Any] = {}
_recipe_encoders_lock = threading.Lock()


# --- the catalog's images ----------------------------------------------------------------------------------


def _model_field(model: type[models.Model], name: str) -> Any:
    return model._meta.get_field(name)


def _image_file_field() -> str:
    return catalog.image_field("image") or "image"


def _image_product_field() -> str:
    return catalog.image_field("product") or "product"


def embeddable_images(*, store_id: int | None = None) -> models.QuerySet:
    """Catalog images that have a stored file (images still waiting for their download have none)."""
    file_field = _image_file_field()
    images = catalog.image_model()._default_manager.exclude(
        Q(**{file_field: ""}) | Q(**{f"{file_field}__isnull": True})
    )
    if store_id is not None:
        store = catalog.role_lookup("store")
        if store is None:
            raise ValueError("The catalog has no store role (LOOKALIKE['PRODUCT_FIELDS']['store']).")
        in_store = catalog.products().filter(**{store: store_id}).values("pk")
        images = images.filter(**{f"{_image_product_field()}__in": in_store})
    return images


def embeddable_image_ids(*, store_id: int | None = None, limit: int | None = None) -> list[int]:
    ids = embeddable_images(store_id=store_id).order_by("pk").values_list("pk", flat=True)
    return list(ids[:limit] if limit is not None else ids)


def missing_image_ids(space: EmbeddingSpace, *, limit: int | None = None) -> list[int]:
    """Embeddable images with neither a vector nor a recorded failure in the space."""
    done = ImageEmbedding.objects.filter(space=space).values("image_id")
    ids = embeddable_images().exclude(pk__in=done).order_by("pk").values_list("pk", flat=True)
    return list(ids[:limit] if limit is not None else ids)


# --- queueing ----------------------------------------------------------------------------------------------

# Image ids saved in this thread's transaction, sent as a few chunked tasks when it commits (an import that
# saves 10,000 images in one transaction queues 40 tasks, not 10,000).
_pending = threading.local()


def queue_image_embedding(
    image_ids: Iterable[int],
    *,
    space: EmbeddingSpace | None = None,
    weights: str | None = None,
    force: bool = False,
) -> None:
    """Queue ``embed_images_task`` for these images when the transaction commits (at once outside one).

    space None: every live space (active and building) at the time the task runs.
    """
    if not hasattr(_pending, "ids"):
        _pending.ids = {}
    key = (space.pk if space is not None else None, weights, force)
    _pending.ids.setdefault(key, []).extend(int(pk) for pk in image_ids)
    # Every save registers the same flush; the first to run after the commit sends everything and the others
    # find nothing left. After a rollback the ids wait for the next commit: a worker skips what is gone.
    transaction.on_commit(_send_pending, robust=True)


def _send_pending() -> None:
    from recommendations.models import EmbeddingBatch
    from recommendations.tasks import embed_images_task

    pending: dict[tuple[int | None, str | None, bool], list[int]] = getattr(_pending, "ids", {})
    _pending.ids = {}
    chunk_size = int(app_setting("TASK_CHUNK_SIZE"))
    for (space_id, weights, force), ids in pending.items():
        unique_ids = sorted(set(ids))
        # One row per task: the lease that gets the batch embedded again if its worker dies (leases.py).
        batches = EmbeddingBatch.objects.bulk_create(
            EmbeddingBatch(
                image_ids=unique_ids[start : start + chunk_size],
                space_id=space_id,
                weights=weights or "",
                force=force,
            )
            for start in range(0, len(unique_ids), chunk_size)
        )
        for batch in batches:
            embed_images_task.delay(
                batch.image_ids, space_id=space_id, weights=weights, force=force, batch_id=batch.pk
            )


def reembed_images(image_ids: Iterable[int]) -> int:
    """Compute the vectors of these images again in every live space, even where the bytes did not change."""
    ids = sorted({int(pk) for pk in image_ids})
    if ids:
        queue_image_embedding(ids, force=True)
    return len(ids)


def queue_catalog_embedding(
    space: EmbeddingSpace,
    *,
    store_id: int | None = None,
    limit: int | None = None,
    weights: str | None = None,
) -> int:
    """Fan the catalog's images out to embedding tasks for ``space``; a building space is activated by
    ``finish_reembedding_task`` once complete. Returns how many images were queued."""
    from recommendations.tasks import finish_reembedding_task

    ids = embeddable_image_ids(store_id=store_id, limit=limit)
    queue_image_embedding(ids, space=space, weights=weights)
    if space.state == EmbeddingSpace.State.BUILDING:
        transaction.on_commit(
            lambda: finish_reembedding_task.apply_async(
                kwargs={"space_id": space.pk, "weights": weights}, countdown=app_setting("REEMBED_POLL_S")
            ),
            robust=True,
        )
    return len(ids)


def start_reembedding(
    encoder_key: str | None = None,
    weights: str | None = None,
    *,
    store_id: int | None = None,
    limit: int | None = None,
    recipe: dict[str, Any] | None = None,
) -> EmbeddingSpace:
    """Embed the catalog with ``encoder_key``/``weights`` (default: the settings) in the background.

    Queries keep using the active space until the new one holds every image, then switch at once (see
    finish_reembedding). With no active space the new one is active from the start.
    """
    from recommendations.tasks import embed_catalog_task

    encoder_key = encoder_key or app_setting("ENCODER")
    weights = str(weights or app_setting("WEIGHTS"))
    space = prepare_space(encoder_key, weights, recipe=recipe)
    transaction.on_commit(
        lambda: embed_catalog_task.delay(space_id=space.pk, store_id=store_id, limit=limit, weights=weights)
    )
    return space


def finish_reembedding(space: EmbeddingSpace) -> bool:
    """Activate a building space that is complete; True when the space is (now) the active one."""
    space.refresh_from_db()
    if space.state == EmbeddingSpace.State.ACTIVE:
        return True
    if space.state != EmbeddingSpace.State.BUILDING or missing_image_ids(space, limit=1):
        return False
    activate_space(space)
    return True


@dataclass(frozen=True)
class ReembeddingCheck:
    done: bool  # the space is active
    building: bool  # still being filled: check again later
    missing: int
    stalled_polls: int
    requeued: int


def check_reembedding(
    space: EmbeddingSpace,
    *,
    weights: str | None = None,
    previous_missing: int | None = None,
    stalled_polls: int = 0,
) -> ReembeddingCheck:
    """Activate the space when complete; when its progress has stalled (tasks lost with a broker), queue the
    missing images again."""
    if finish_reembedding(space):
        return ReembeddingCheck(done=True, building=False, missing=0, stalled_polls=0, requeued=0)
    if space.state != EmbeddingSpace.State.BUILDING:  # retired meanwhile: another space was chosen
        return ReembeddingCheck(done=False, building=False, missing=0, stalled_polls=0, requeued=0)
    missing = missing_image_ids(space)
    stalled = stalled_polls + 1 if previous_missing is not None and len(missing) >= previous_missing else 0
    requeued = 0
    if stalled >= STALLED_POLLS_BEFORE_REQUEUE:
        queue_image_embedding(missing, space=space, weights=weights)
        requeued, stalled = len(missing), 0
    return ReembeddingCheck(
        done=False, building=True, missing=len(missing), stalled_polls=stalled, requeued=requeued
    )


# --- the pipeline ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Item:
    image_id: int
    product_id: int
    sha256: str


EmbeddedImage = _Item


def write_image_vectors(
    space: EmbeddingSpace,
    items: Sequence[_Item],
    vectors: np.ndarray,
    descriptors: np.ndarray | None,
    *,
    failures: Sequence[tuple[_Item, str]] = (),
) -> None:
    """Store vectors computed elsewhere (catalog adaptation) as the pipeline stores its own."""
    _write_rows(space, items, vectors, failures, descriptors=descriptors)


def embed_images(
    image_ids: Iterable[int],
    *,
    space: EmbeddingSpace | None = None,
    batch_size: int | None = None,
    force: bool = False,
    weights: str | None = None,
    progress: Callable[[int], Any] | None = None,
) -> EmbedReport:
    """Embed catalog images into ``space`` (None: every live space) and update their products' vectors.

    Idempotent: an image whose bytes (sha256 of the stored file, not the catalog's column) are already
    embedded in the space is skipped, and one whose bytes another image already has gets that vector copied.
    Vectors are written in bulk per batch with the products' vectors in the same transaction, so an
    interrupted run loses at most the batches in flight and a rerun finishes the rest without duplicates.
    A bad image is recorded as failed (here and, when it has the fields, on the catalog image) and the
    batch goes on. ``force`` computes every vector again. ``progress(n)`` is called as images finish.
    Raises OSError when storage cannot be read (a retry may succeed) and the encoder's errors.
    """
    ids = sorted({int(pk) for pk in image_ids})
    report = EmbedReport()
    options: dict[str, Any] = {
        "batch_size": batch_size,
        "force": force,
        "progress": progress,
        "report": report,
    }
    if space is not None:
        _embed_into_space(ids, space, weights=weights, **options)
        return report
    targets = live_spaces()
    if not targets:  # nothing to embed into yet: `manage.py embed_catalog` creates the first space
        return report
    from recommendations.encoders import EncoderWeightsUnavailable  # torch: only once there is work

    for target in targets:
        try:
            _embed_into_space(ids, target, weights=None, **options)
        except EncoderWeightsUnavailable:
            if target.state == EmbeddingSpace.State.ACTIVE:
                raise
            # The re-embedding's own tasks carry its weights; finish_reembedding_task requeues the rest.
            logger.warning(
                "Not embedding into building space %s: its weights are not configured here", target
            )
    return report


def _embed_into_space(
    ids: list[int],
    space: EmbeddingSpace,
    *,
    batch_size: int | None,
    force: bool,
    weights: str | None,
    progress: Callable[[int], Any] | None,
    report: EmbedReport,
) -> None:
    started = time.perf_counter()
    batch_size = int(batch_size or app_setting("BATCH_SIZE"))
    file_field = _image_file_field()
    image_model = catalog.image_model()
    storage = _model_field(image_model, file_field).storage
    product_attname = _model_field(image_model, _image_product_field()).attname
    # Plain values, not model instances: an ImageField with width/height fields would read them (a query
    # per row when deferred) as each instance is built.
    rows: list[tuple[int, int, str]] = list(
        embeddable_images().filter(pk__in=ids).order_by("pk").values_list("pk", product_attname, file_field)
    )
    report.unavailable += len(ids) - len(rows)
    if not rows:
        return
    existing = {
        image_id: (sha256, product_id)
        for image_id, sha256, product_id in ImageEmbedding.objects.filter(
            space=space, image_id__in=[image_id for image_id, _, _ in rows]
        ).values_list("image_id", "sha256", "product_id")
    }

    def pending_items() -> Iterator[tuple[_Item, bytes]]:
        """Images that need the model; skips, copies and missing files are written here, chunk by chunk."""
        with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="read") as reader:
            for chunk in _chunks(rows, batch_size):
                to_embed: list[tuple[_Item, bytes]] = []
                skipped: list[_Item] = []
                failures: list[tuple[_Item, str]] = []
                datas = reader.map(lambda row: _read_file(storage, row[2]), chunk)
                for (image_id, product_id, name), data in zip(chunk, datas, strict=True):
                    if data is None:
                        failures.append(
                            (_Item(image_id, product_id, ""), f"file missing from storage: {name}")
                        )
                        continue
                    item = _Item(image_id, product_id, hashlib.sha256(data).hexdigest())
                    if not force and existing.get(image_id) == (item.sha256, product_id):
                        skipped.append(item)
                    else:
                        to_embed.append((item, data))
                with transaction.atomic():
                    copied = {} if force else _copy_known_vectors(space, [item for item, _ in to_embed])
                    _write_rows(space, [], [], failures)
                    copied_failures = [
                        (item, reason) for item, reason in copied.values() if reason is not None
                    ]
                    _mark_catalog_failures(failures + copied_failures)
                    touched = {item.product_id for item in skipped} | {
                        item.product_id for item, _ in failures
                    }
                    touched |= {item.product_id for item, _ in copied.values()}
                    update_product_vectors(touched, space)
                report.skipped += len(skipped)
                report.failed.extend((item.image_id, reason) for item, reason in failures + copied_failures)
                reused = len(copied) - len(copied_failures)
                report.embedded += reused
                report.reused += reused
                if progress is not None:
                    progress(len(chunk) - len(to_embed) + len(copied))
                yield from ((item, data) for item, data in to_embed if item.image_id not in copied)

    encoder: Encoder | None = None
    for batch in _model_batches(pending_items(), space=space, weights=weights, batch_size=batch_size):
        vectors = np.empty((0, space.dimensions), dtype=np.float32)
        descriptors: np.ndarray | None = None
        if batch.tensor is not None:
            encoder = encoder or encoder_for_space(space, weights=weights)
            if hasattr(encoder, "embed_parts"):  # a recipe's colour + pattern descriptors are stored too
                vectors, descriptors = encoder.embed_parts(batch.tensor)
            else:
                vectors = encoder.embed_tensors(batch.tensor)
        with transaction.atomic():
            _write_rows(space, batch.keys, vectors, batch.failures, descriptors=descriptors)
            _mark_catalog_failures(batch.failures)
            update_product_vectors(
                {item.product_id for item in batch.keys + [key for key, _ in batch.failures]}, space
            )
        report.embedded += len(batch.keys)
        report.failed.extend((item.image_id, reason) for item, reason in batch.failures)
        if progress is not None:
            progress(len(batch.keys) + len(batch.failures))
    report.seconds += time.perf_counter() - started
    if space.state == EmbeddingSpace.State.BUILDING:
        # The run that completes a new space switches to it at once (finish_reembedding_task: safety net).
        finish_reembedding(space)


def _model_batches(
    items: Iterator[tuple[_Item, bytes]], *, space: EmbeddingSpace, weights: str | None, batch_size: int
) -> Iterator[Any]:
    """Decoded, preprocessed batches; decoding runs in threads (or on the GPU) ahead of the model."""
    from recommendations import imaging

    first = next(items, None)
    if first is None:  # everything was skipped or copied: no model needed
        return
    encoder = encoder_for_space(space, weights=weights)
    options: dict[str, Any] = {
        "preprocess": encoder.preprocess,
        "batch_size": batch_size,
        "workers": int(app_setting("DECODE_WORKERS")),
        "max_pixels": int(app_setting("MAX_IMAGE_PIXELS")),
    }
    stream = itertools.chain([first], items)
    if encoder.device.type == "cuda" and app_setting("GPU_DECODE"):
        yield from imaging.iter_batches_on_gpu(stream, device=encoder.device, **options)
    else:
        yield from imaging.iter_batches(stream, **options)


def _chunks(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _read_file(storage: Any, name: str) -> bytes | None:
    """The stored bytes, or None when the file is gone; other storage errors (OSError) propagate."""
    try:
        with storage.open(name, "rb") as stream:
            return stream.read()
    except FileNotFoundError:
        return None


def _write_rows(
    space: EmbeddingSpace,
    items: Sequence[_Item],
    vectors: np.ndarray | Sequence[np.ndarray],
    failures: Sequence[tuple[_Item, str]],
    *,
    descriptors: np.ndarray | Sequence[np.ndarray] | None = None,
) -> None:
    """Upsert image embeddings on (space, image), vectors sent in binary.

    pgvector's Django field sends a vector as text, about 4 ms per 1,280-d row in Python: a tenth of the
    model's time per image on a 2-core CPU. The binary form is the float16 bytes themselves.
    """
    described = descriptors if descriptors is not None else [None] * len(items)
    rows: list[tuple[Any, ...]] = [
        (
            space.pk,
            item.image_id,
            item.product_id,
            item.sha256,
            vector,
            descriptor,
            ImageEmbedding.Status.EMBEDDED,
            "",
        )
        for item, vector, descriptor in zip(items, vectors, described, strict=True)
    ]
    rows += [
        (
            space.pk,
            item.image_id,
            item.product_id,
            item.sha256,
            None,
            None,
            ImageEmbedding.Status.FAILED,
            reason[:_FAILURE_REASON_MAX_CHARS],
        )
        for item, reason in failures
    ]
    if not rows:
        return
    table = connection.ops.quote_name(ImageEmbedding._meta.db_table)
    with _binary_cursor() as cursor:
        cursor.executemany(
            f"""
            INSERT INTO {table}
                (space_id, image_id, product_id, sha256, vector, descriptor, status, failure_reason,
                 created_at)
            VALUES (%s, %s, %s, %s, %b, %b, %s, %s, now())
            ON CONFLICT (space_id, image_id) DO UPDATE SET
                product_id = EXCLUDED.product_id, sha256 = EXCLUDED.sha256, vector = EXCLUDED.vector,
                descriptor = EXCLUDED.descriptor, status = EXCLUDED.status,
                failure_reason = EXCLUDED.failure_reason
            """,
            rows,
        )


_halfvec_oids: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def _binary_cursor() -> Iterator[Any]:
    """A psycopg cursor on Django's connection (same transaction) that sends numpy arrays as halfvec."""
    from psycopg import Cursor
    from psycopg.adapt import Dumper
    from psycopg.pq import Format
    from psycopg.types import TypeInfo

    connection.ensure_connection()
    raw = connection.connection
    if raw not in _halfvec_oids:
        # Not registered on the connection: selectors registers its own loaders when it finds none there.
        info = TypeInfo.fetch(raw, "halfvec")
        if info is None:
            raise RuntimeError("The pgvector extension (type halfvec) is not installed in this database.")
        _halfvec_oids[raw] = info.oid

    class HalfvecDumper(Dumper):
        format = Format.BINARY
        oid = _halfvec_oids[raw]

        def dump(self, obj: np.ndarray) -> bytes:
            # Binary halfvec: uint16 dimensions, uint16 unused, then big-endian float16 values.
            values = np.asarray(obj, dtype=">f2")
            return struct.pack(">HH", values.shape[0], 0) + values.tobytes()

    # Django's cursors bind parameters client-side, as text; this one binds them on the server.
    with Cursor(raw) as cursor:
        cursor.adapters.register_dumper(np.ndarray, HalfvecDumper)  # this cursor only
        yield cursor


def _copy_known_vectors(space: EmbeddingSpace, items: Sequence[_Item]) -> dict[int, tuple[_Item, str | None]]:
    """Give images whose bytes another image of the space already has that image's vector (or failure).

    Returns {image id: (item, failure reason or None)} for the images written.
    """
    if not items:
        return {}
    table = connection.ops.quote_name(ImageEmbedding._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {table}
                (space_id, image_id, product_id, sha256, vector, descriptor, status, failure_reason,
                 created_at)
            SELECT %s, item.image_id, item.product_id, item.sha256, source.vector, source.descriptor,
                   source.status, source.failure_reason, now()
            FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[]) AS item(image_id, product_id, sha256)
            CROSS JOIN LATERAL (
                SELECT vector, descriptor, status, failure_reason FROM {table} AS known
                WHERE known.space_id = %s AND known.sha256 = item.sha256 AND known.image_id <> item.image_id
                ORDER BY (known.status = 'embedded') DESC, known.id
                LIMIT 1
            ) AS source
            ON CONFLICT (space_id, image_id) DO UPDATE SET
                product_id = EXCLUDED.product_id, sha256 = EXCLUDED.sha256, vector = EXCLUDED.vector,
                descriptor = EXCLUDED.descriptor, status = EXCLUDED.status,
                failure_reason = EXCLUDED.failure_reason
            RETURNING image_id, status, failure_reason
            """,
            [
                space.pk,
                [item.image_id for item in items],
                [item.product_id for item in items],
                [item.sha256 for item in items],
                space.pk,
            ],
        )
        written = cursor.fetchall()
    by_id = {item.image_id: item for item in items}
    return {
        image_id: (by_id[image_id], reason if status == ImageEmbedding.Status.FAILED else None)
        for image_id, status, reason in written
    }


def _mark_catalog_failures(failures: Sequence[tuple[_Item, str]]) -> None:
    """Report failures on the catalog's image rows when its model has status / failure_reason fields."""
    model = catalog.image_model()
    status_field, reason_field = catalog.image_field("status"), catalog.image_field("failure_reason")
    if not failures or status_field is None or not catalog.has_field(model, status_field):
        return
    values: dict[str, Any] = {status_field: "failed"}
    if reason_field is not None and catalog.has_field(model, reason_field):
        limit = _model_field(model, reason_field).max_length or _FAILURE_REASON_MAX_CHARS
        values[reason_field] = Case(
            *[
                When(pk=item.image_id, then=Value(f"embedding: {reason}"[:limit]))
                for item, reason in failures
            ],
            output_field=models.CharField(),
        )
    # QuerySet.update sends no signals: the receivers do not queue these images again.
    model._default_manager.filter(pk__in=[item.image_id for item, _ in failures]).update(**values)


def update_product_vectors(product_ids: Iterable[int], space: EmbeddingSpace) -> int:
    """Recompute the products' query vectors in the space from their embedded images.

    RECOMMENDATIONS["PRODUCT_VECTOR"]: "primary" takes the first embedded image by position, "mean" the
    normalised mean of all embedded images. ``image_sha256s`` lists the digests in position order. A row
    is only rewritten when it changes (every rewrite is an HNSW index insert); products left without an
    embedded image lose their vector. Returns the number of products written or removed.
    """
    ids = sorted({int(pk) for pk in product_ids})
    if not ids:
        return 0
    image_model = catalog.image_model()
    quote = connection.ops.quote_name
    image_table = quote(image_model._meta.db_table)
    image_pk = quote(str(image_model._meta.pk.column))
    image_product = quote(_model_field(image_model, _image_product_field()).column)
    position_field = catalog.image_field("position")
    position = "0"
    if position_field is not None and catalog.has_field(image_model, position_field):
        position = f"img.{quote(str(_model_field(image_model, position_field).column))}"
    if app_setting("PRODUCT_VECTOR") == "mean":
        vector = "l2_normalize(avg(vector))"
    else:
        vector = "(array_agg(vector ORDER BY image_position, image_id))[1]"
    # The primary photo's colour: a mean of a product's photos would blur a close-up into the packshot.
    descriptor = "(array_agg(descriptor ORDER BY image_position, image_id))[1]"
    embeddings = quote(ImageEmbedding._meta.db_table)
    products = quote(ProductEmbedding._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH images AS (
                SELECT ie.product_id, ie.image_id, ie.vector, ie.descriptor, ie.sha256,
                       {position} AS image_position
                FROM {embeddings} AS ie
                JOIN {image_table} AS img
                  ON img.{image_pk} = ie.image_id AND img.{image_product} = ie.product_id
                WHERE ie.space_id = %(space)s AND ie.product_id = ANY(%(ids)s)
                  AND ie.status = 'embedded' AND ie.vector IS NOT NULL
            ), wanted AS (
                SELECT product_id, {vector} AS vector, {descriptor} AS descriptor,
                       array_agg(sha256 ORDER BY image_position, image_id)::varchar(64)[] AS image_sha256s
                FROM images GROUP BY product_id
            ), written AS (
                INSERT INTO {products} AS pe
                    (space_id, product_id, vector, descriptor, image_sha256s, updated_at)
                SELECT %(space)s, product_id, vector, descriptor, image_sha256s, now() FROM wanted
                ON CONFLICT (space_id, product_id) DO UPDATE SET
                    vector = EXCLUDED.vector, descriptor = EXCLUDED.descriptor,
                    image_sha256s = EXCLUDED.image_sha256s, updated_at = EXCLUDED.updated_at
                WHERE pe.vector IS DISTINCT FROM EXCLUDED.vector
                   OR pe.descriptor IS DISTINCT FROM EXCLUDED.descriptor
                   OR pe.image_sha256s IS DISTINCT FROM EXCLUDED.image_sha256s
                RETURNING 1
            ), removed AS (
                DELETE FROM {products}
                WHERE space_id = %(space)s AND product_id = ANY(%(ids)s)
                  AND product_id NOT IN (SELECT product_id FROM wanted)
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM written) + (SELECT count(*) FROM removed)
            """,
            {"space": space.pk, "ids": ids},
        )
        (changed,) = cursor.fetchone()
    return int(changed)


# --- query images ------------------------------------------------------------------------------------------


def embed_query_image(
    data: bytes, *, max_decode_pixels: int | None = None
) -> tuple[EmbeddingSpace, np.ndarray]:
    """Embed an uploaded or fetched photo with the active space's encoder: (space, unit float32 vector).

    Raises imaging.BadImage (with a reason) for a file that cannot be used (imaging.ImageTooLarge past
    ``max_decode_pixels``, see ``imaging.load_image``), NoActiveSpace before the catalog has been embedded.
    """
    from recommendations import imaging

    space = get_active_space()
    if space is None:
        raise NoActiveSpace("No embedding space is active yet: run `manage.py embed_catalog` first.")
    image = imaging.load_image(
        data, max_pixels=int(app_setting("IMAGE_SEARCH_MAX_PIXELS")), max_decode_pixels=max_decode_pixels
    )
    vector = encoder_for_space(space).embed([image])[0]
    return space, np.asarray(vector, dtype=np.float32)
