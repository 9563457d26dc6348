"""``manage.py evaluate_personalisation``: offline evaluation of the shopper profiles on the Myntra photos.

Runs on vectors in memory (embedded once with the configured encoder and cached in ~/.cache/lookalike or
$LOOKALIKE_CACHE_DIR), with the same selection functions as /for-you/ and the preference game. See
docs/personalisation.md.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from recommendations import profiles, simulation
from recommendations.conf import app_setting


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

    def handle(self, *args: Any, **options: Any) -> None:
        data_dir = Path(options["data_dir"])
        if not (data_dir / "myntra" / "labels.csv").exists():
            raise CommandError(
                f"{data_dir}/myntra/labels.csv not found: pass --data-dir or set LOOKALIKE_DATA_DIR."
            )
        strategies = [s.strip() for s in options["strategies"].split(",") if s.strip()]
        unknown = set(strategies) - set(profiles.STRATEGIES)
        if unknown:
            raise CommandError(
                f"Unknown strategies {sorted(unknown)}: choose from {list(profiles.STRATEGIES)}."
            )
        started = time.perf_counter()
        data = simulation.load_myntra_vectors(
            data_dir,
            encoder_key=options["encoder"],
            weights=options["weights"],
            limit=options["limit"],
            progress=lambda done, total: self.stderr.write(f"\rembedding photos: {done}/{total}", ending=""),
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
            results = simulation.run_target_finding(
                data,
                strategies=strategies,
                judges=[j.strip() for j in options["judges"].split(",") if j.strip()],
                slots=[_slots(s) for s in options["slots"].split(",")],
                targets=options["targets"],
                seed=options["seed"],
                explore_mode=options["explore_mode"],
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
