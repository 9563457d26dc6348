"""``manage.py adapt_embeddings [--epochs N] [--dimensions D] [--no-activate] [--async]``: learn an embedding
space from the catalog's own photos and labels, and activate it when it beats the active space on held-out
products."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from recommendations import adaptation as adaptation_service
from recommendations import services
from recommendations.models import Adaptation


class Command(BaseCommand):
    help = (
        "Adapt the active embedding space to this catalog: fine-tune the CNN's last blocks and learn a "
        "projection from the catalog's products (several photos of one product, categories, colours, "
        "designs), validated on held-out products. The adapted space is activated only when it is better; "
        "the report (base vs adapted) is printed and kept on the adaptation (Django admin)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--epochs", type=int, default=None, help="training epochs (ADAPT_EPOCHS)")
        parser.add_argument("--dimensions", type=int, default=None, help="dimensions (ADAPT_DIMENSIONS)")
        parser.add_argument(
            "--validation-share", type=float, default=None, help="share of products held out (0.2)"
        )
        parser.add_argument("--no-activate", action="store_true", help="report only; keep the active space")
        parser.add_argument(
            "--async", action="store_true", dest="queue", help="queue it for an embedding worker"
        )
        parser.add_argument("--json", default=None, help="also write the report here")

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("epochs", "dimensions"):
            if options[name] is not None and options[name] < 1:
                raise CommandError(f"--{name} must be at least 1.")
        share = options["validation_share"]
        if share is not None and not 0 < share < 1:
            raise CommandError("--validation-share must be between 0 and 1.")
        run_options = {
            "epochs": options["epochs"],
            "dimensions": options["dimensions"],
            "validation_share": share,
            "no_activate": options["no_activate"],
        }
        run_options = {key: value for key, value in run_options.items() if value not in (None, False)}
        base = services.get_active_space()
        if base is None:
            raise CommandError("No embedding space is active: run `manage.py embed_catalog` first.")
        if options["queue"]:
            adaptation = adaptation_service.start_adaptation(options=run_options)
            self.stdout.write(
                f"Queued adaptation {adaptation.pk} of space {base.pk} for an embedding worker."
            )
            return
        adaptation = Adaptation.objects.create(base_space=base, options=run_options)
        self.stdout.write(f"Adapting space {base.pk} ({base}) to the catalog (adaptation {adaptation.pk})")
        try:
            adaptation_service.run_adaptation(
                adaptation, progress=lambda text: self.stderr.write(f"  {text}")
            )
        except Exception as error:
            adaptation_service.record_failure(adaptation.pk, error)
            raise CommandError(f"Adaptation failed: {error}") from error
        self.stdout.write(format_report(adaptation))
        if options["json"]:
            with open(options["json"], "w", encoding="utf-8") as handle:
                json.dump(
                    {"status": adaptation.status, "message": adaptation.message, **adaptation.report},
                    handle,
                    indent=2,
                )


def format_report(adaptation: Adaptation) -> str:
    report = adaptation.report

    def count(name: str) -> str:
        return f"{report.get(name, 0):,}"

    lines = [
        f"{count('photos')} photos of {count('products')} products; {count('labelled_products')} labelled "
        f"(categories {count('products_with_category')}, colours {count('products_with_colour')}, "
        f"designs {count('products_with_design')}); trained on {count('training_photos')} photos, "
        f"validated on {count('validation_photos')}",
    ]
    base, adapted = report.get("base", {}), report.get("adapted", {})
    if adapted:
        lines.append(f"{'held-out metric':<32} {'base':>7} {'adapted':>8}")
        for name in adapted:
            lines.append(f"{name:<32} {base.get(name, float('nan')):>7.3f} {adapted[name]:>8.3f}")
    if report.get("pull"):
        pull = adaptation_service.describe_pull(report["pull"])
        lines.append(f"prototype pull (chosen on the held-out products): {pull}")
    lines.append(f"{adaptation.get_status_display()}: {adaptation.message} ({report.get('seconds', 0)} s)")
    return "\n".join(lines)
