"""``manage.py evaluate_personalisation``: offline evaluation of the shopper profiles on the Myntra photos.

Runs on vectors in memory (embedded once with the configured encoder and cached in ~/.cache/lookalike or
$LOOKALIKE_CACHE_DIR; photos the shop has already embedded with that encoder are reused, matched by content),
with the same selection functions as /for-you/ and the preference game, with progress bars. See
docs/personalisation.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from recommendations import profiles, simulation
from recommendations.conf import app_setting
from recommendations.encoders import EncoderWeightsUnavailable, UnknownEncoder, weights_id_for
from recommendations.models import EmbeddingSpace, ImageEmbedding


class _ProgressBar(tqdm):
    def update_to(self, done: int, total: int) -> None:
        self.total = total
        self.update(done - self.n)


@contextlib.contextmanager
def _labels_errors() -> Iterator[None]:
    try:
        yield
    except ValueError as error:  # a column the labels file does not have
        raise CommandError(str(error)) from None


def _as_array(vector: Any) -> np.ndarray:
    return np.asarray(vector.to_list() if hasattr(vector, "to_list") else vector, dtype=np.float32)


def _slots(value: str) -> tuple[int, int]:
    exploit, _, explore = value.partition("+")
    return int(exploit), int(explore)


class Command(BaseCommand):
    help = (
        "Target-finding simulation (rounds until a hidden target is shown, judged by the same vectors and by "
        "labels) and leave-last-out metrics@k for the four profile strategies and a popularity baseline."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        default_data = os.environ.get(
            "LOOKALIKE_DATA_DIR",
            str(Path(getattr(settings, "BASE_DIR", Path.cwd())).parent / "shared" / "data"),
        )
        parser.add_argument(
            "--data-dir", default=default_data, help="Folder holding myntra/ (LOOKALIKE_DATA_DIR)."
        )
        parser.add_argument(
            "--labels",
            default=None,
            help="Another labelled photo set: its labels CSV (default: <data-dir>/myntra/labels.csv); the "
            "photos are in images/ beside it, or --images.",
        )
        parser.add_argument("--images", default=None, help="Folder of the photos the labels name.")
        defaults = simulation.MYNTRA_COLUMNS
        for option, help_text in (
            ("image", "file name of the photo"),
            ("article_type", "product type (the judge's first label; sessions browse one type + colour)"),
            ("colour", "colour"),
            ("sub_category", "broader group, e.g. Topwear"),
            ("master_category", "broadest group, e.g. Apparel"),
            ("id", "numeric id ('' to number the rows)"),
            ("md5", "photo digest: byte-identical photos are dropped ('' to keep every row)"),
        ):
            parser.add_argument(
                f"--{option.replace('_', '-')}-column",
                default=getattr(defaults, option),
                help=f"Labels column: {help_text}.",
            )
        parser.add_argument("--encoder", default=app_setting("ENCODER"))
        parser.add_argument("--weights", default=app_setting("WEIGHTS"))
        parser.add_argument("--strategies", default=",".join(profiles.STRATEGIES))
        parser.add_argument("--judges", default="vectors,labels", help="vectors (optimistic) and/or labels.")
        parser.add_argument(
            "--slots", default="5+5", help="exploit+explore per round, comma-separated: 5+5,8+2"
        )
        parser.add_argument("--targets", type=int, default=100, help="Hidden targets per configuration.")
        parser.add_argument(
            "--sessions", type=int, default=300, help="Simulated sessions for leave-last-out."
        )
        parser.add_argument("--k", type=int, default=10, help="Cut-off of the leave-last-out metrics.")
        parser.add_argument(
            "--explore-mode", choices=["diverse", "random"], default=app_setting("EXPLORE_MODE")
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--limit", type=int, default=None, help="Use only the first N photos (quick runs)."
        )
        parser.add_argument("--skip-targets", action="store_true")
        parser.add_argument("--skip-leave-last-out", action="store_true")
        parser.add_argument("--json", dest="json_path", default=None, help="Also write the figures here.")
        parser.add_argument("--no-progress", action="store_true", help="no progress bars")

    def _bar(self, description: str, *, unit: str) -> _ProgressBar:
        return _ProgressBar(
            desc=description,
            unit=f" {unit}",
            disable=self._no_progress,
            file=getattr(self.stderr, "_out", sys.stderr),  # the raw stream: tqdm redraws its line with \r
        )

    def _stored_vectors(self, encoder: str, weights: str) -> Callable[[list[str]], dict[str, np.ndarray]]:
        """Photos already embedded by the shop (same encoder and weights, matched by sha256) are reused."""

        def lookup(digests: list[str]) -> dict[str, np.ndarray]:
            try:
                weights_id = weights_id_for(encoder, weights)
            except (EncoderWeightsUnavailable, UnknownEncoder):
                return {}
            spaces = EmbeddingSpace.objects.filter(encoder=encoder, weights_id=weights_id)
            rows = ImageEmbedding.objects.filter(
                space__in=spaces, sha256__in=digests, status=ImageEmbedding.Status.EMBEDDED
            ).values_list("sha256", "vector")
            found = {digest: _as_array(vector) for digest, vector in rows}
            self.stdout.write(f"{len(found):,} of {len(set(digests)):,} photos have a stored vector.")
            return found

        return lookup

    def handle(self, *args: Any, **options: Any) -> None:
        self._no_progress = options["no_progress"]
        data_dir = Path(options["data_dir"])
        labels_path = Path(options["labels"]) if options["labels"] else data_dir / "myntra" / "labels.csv"
        if not labels_path.exists():
            raise CommandError(
                f"{labels_path} not found: pass --labels, --data-dir or set LOOKALIKE_DATA_DIR."
            )
        columns = simulation.LabelColumns(
            image=options["image_column"],
            article_type=options["article_type_column"],
            colour=options["colour_column"],
            sub_category=options["sub_category_column"],
            master_category=options["master_category_column"],
            id=options["id_column"] or None,
            md5=options["md5_column"] or None,
        )
        strategies = [s.strip() for s in options["strategies"].split(",") if s.strip()]
        unknown = set(strategies) - set(profiles.STRATEGIES)
        if unknown:
            raise CommandError(
                f"Unknown strategies {sorted(unknown)}: choose from {list(profiles.STRATEGIES)}."
            )
        started = time.perf_counter()
        with self._bar("embedding photos", unit="photo") as bar, _labels_errors():
            data = simulation.load_labelled_vectors(
                labels_path,
                images_dir=Path(options["images"]) if options["images"] else None,
                columns=columns,
                encoder_key=options["encoder"],
                weights=options["weights"],
                limit=options["limit"],
                progress=bar.update_to,
                stored=self._stored_vectors(options["encoder"], options["weights"]),
            )
        self.stdout.write(
            f"{len(data):,} distinct photos, {options['encoder']} ({data.weights_id}), "
            f"{data.vectors.shape[1]}-d; loaded in {time.perf_counter() - started:.1f} s"
        )
        report: dict[str, Any] = {
            "photos": len(data),
            "encoder": options["encoder"],
            "weights_id": data.weights_id,
        }
        if not options["skip_targets"]:
            started = time.perf_counter()
            with self._bar("target finding", unit="search") as bar:
                results = simulation.run_target_finding(
                    data,
                    strategies=strategies,
                    judges=[j.strip() for j in options["judges"].split(",") if j.strip()],
                    slots=[_slots(s) for s in options["slots"].split(",")],
                    targets=options["targets"],
                    seed=options["seed"],
                    explore_mode=options["explore_mode"],
                    progress=bar.update_to,
                )
            self.stdout.write(
                f"\nTarget finding: {options['targets']} hidden targets, "
                f"explore mode {options['explore_mode']} "
                f"({time.perf_counter() - started:.0f} s)\n"
            )
            self.stdout.write(simulation.target_table(results, n=len(data)))
            report["target_finding"] = [
                {
                    "strategy": r.strategy,
                    "judge": r.judge,
                    "k_exploit": r.k_exploit,
                    "k_explore": r.k_explore,
                    "mean_rounds": r.mean,
                    "median_rounds": r.median,
                    "random_rounds": simulation.random_browsing_rounds(len(data), r.k_exploit + r.k_explore),
                }
                for r in results
            ]
        if not options["skip_leave_last_out"]:
            started = time.perf_counter()
            table = simulation.run_leave_last_out(
                data,
                strategies=strategies,
                sessions=options["sessions"],
                k=options["k"],
                seed=options["seed"],
            )
            self.stdout.write(
                f"\n\nLeave-last-out: {options['sessions']} simulated sessions "
                "(one articleType + colour each), "
                f"seen items excluded ({time.perf_counter() - started:.0f} s)\n"
            )
            self.stdout.write(simulation.leave_last_out_table(table, k=options["k"]))
            report["leave_last_out"] = table
        if options["json_path"]:
            Path(options["json_path"]).write_text(json.dumps(report, indent=2))
            self.stdout.write(f"\nwrote {options['json_path']}")
