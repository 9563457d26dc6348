"""Reads: what an import would write, without writing it (``import_catalog --dry-run``, the admin's
Preview button).

``preview_import`` reads the source exactly as ``run_import`` does — the same sources, parsers,
variant grouping and currency rules — but writes nothing (no products, no job, no error log) and
downloads no photo. The result is the JSON that ``import_catalog --json FILE`` writes::

    {"products": [{"external_id", "title", "price", "currency", "url", "category", "in_stock",
                   "images": [urls or paths in the archive],
                   "variants": [{"external_id", "colour", "size", "price", "in_stock"}]}],
     "errors": [{"row", "reason"}],
     "warnings": [text]}

Prices are strings (``"29.90"``) so that no precision is lost; ``category`` is ``"Men > Shirts"``.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from scraper.conf import build_client
from scraper.http import FetchError
from scraper.models import ImportJob
from scraper.netguard import request_deadline
from scraper.parsers import FeedError, ScrapedProduct
from scraper.services import ImportCancelled, SourceUnusable, _ImportRun, open_source
from scraper.sources import PAGE_END, Failure, Skipped, Warned

Preview = dict[str, Any]


def preview_import(
    job: ImportJob, *, max_products: int | None = None, time_budget_s: float | None = None
) -> Preview:
    """What importing ``job``'s source would write. ``job`` need not be saved (nothing is saved).

    ``max_products`` stops reading after that many products (the admin's preview shows the start of a
    large catalog); ``time_budget_s`` stops it after about that long (a web request must not crawl a
    whole store): every request then has a share of the budget and no retries. Either way the JSON
    has ``"truncated": true``.
    """
    run = _ImportRun(job, images="inline", on_progress=None)
    preview: Preview = {"products": [], "errors": [], "warnings": []}
    skipped = 0
    overrides: dict[str, Any] = {}
    deadline: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if time_budget_s is not None:
        overrides = {"max_retries": 0, "total_timeout_s": max(1.0, time_budget_s / 2)}
        deadline = request_deadline(time.monotonic() + time_budget_s)  # the fetches of this thread
        stop_at = time.monotonic() + time_budget_s
    try:
        with build_client(**overrides) as client, contextlib.ExitStack() as resources, deadline:
            source = open_source(job, client=client, limits=run.limits, resources=resources)
            for item in source.iter_records():
                if time_budget_s is not None and time.monotonic() > stop_at:
                    preview["truncated"] = True
                    run.warn(
                        f"The preview stopped after {time_budget_s:g} s; the import reads the whole source."
                    )
                    break
                if item is PAGE_END:
                    continue
                if isinstance(item, ScrapedProduct):
                    if max_products is not None and len(preview["products"]) >= max_products:
                        preview["truncated"] = True
                        break
                    run.fill_currency(item)
                    preview["products"].append(product_json(item))
                    preview["errors"] += [
                        {"row": error.source_ref, "reason": error.reason} for error in item.image_errors
                    ]
                elif isinstance(item, Failure):
                    preview["errors"].append({"row": item.source_ref, "reason": item.reason})
                elif isinstance(item, Warned):
                    run.warn(item.text)
                elif isinstance(item, Skipped):
                    skipped += 1
    except (FetchError, FeedError, SourceUnusable, ImportCancelled) as error:
        preview["errors"].append({"row": job.source_label, "reason": getattr(error, "reason", str(error))})
    run.note_guessed_currency()
    preview["warnings"] = list(run.warnings)
    preview["skipped"] = skipped
    preview["kind"] = job.kind
    return preview


def product_json(record: ScrapedProduct) -> dict[str, Any]:
    return {
        "external_id": record.external_id,
        "title": record.title,
        "price": None if record.price is None else str(record.price),
        "currency": record.currency,
        "url": record.url,
        "category": " > ".join(record.category_path),
        "in_stock": record.in_stock,
        "images": record.image_urls + [image.name for image in record.image_files],
        "variants": [
            {
                "external_id": variant.external_id,
                "colour": variant.colour,
                "size": variant.size,
                "price": None if variant.price is None else str(variant.price),
                "in_stock": variant.in_stock,
            }
            for variant in record.variants
        ],
    }
