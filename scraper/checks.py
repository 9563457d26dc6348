"""System checks for the SCRAPER settings: the catalog writer and the fields it writes to."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register
from django.core.exceptions import FieldDoesNotExist
from django.utils.module_loading import import_string

from lookalike import checks as catalog_checks  # noqa: F401  the LOOKALIKE checks
from lookalike.conf import lookalike_setting
from scraper.conf import DEFAULTS, app_setting


@register()
def check_catalog(app_configs: Any, **kwargs: Any) -> list[Error]:
    from scraper.catalog import CatalogWriter, product_model

    errors: list[Error] = []
    try:
        writer = import_string(app_setting("CATALOG_WRITER"))
    except ImportError as error:
        writer = None
        errors.append(Error(f"SCRAPER['CATALOG_WRITER'] cannot be imported: {error}", id="scraper.E001"))
    if writer is not None and not (isinstance(writer, type) and issubclass(writer, CatalogWriter)):
        errors.append(
            Error("SCRAPER['CATALOG_WRITER'] must name a subclass of CatalogWriter.", id="scraper.E001")
        )
        writer = None
    try:
        model = product_model()
    except (LookupError, ValueError):
        model = None  # lookalike.E003 says so
    if writer is not None and model is not None:
        mapping = lookalike_setting("PRODUCT_FIELDS")
        for role in writer.required_product_roles:
            name = mapping.get(role)
            try:
                if not isinstance(name, str) or "__" in name:
                    raise FieldDoesNotExist
                model._meta.get_field(name)
            except FieldDoesNotExist:
                errors.append(
                    Error(
                        f"LOOKALIKE['PRODUCT_FIELDS'][{role!r}] = {name!r} is not a field of "
                        f"{model._meta.label}: {writer.__name__} writes it.",
                        hint="Map the role to a field, or name another SCRAPER['CATALOG_WRITER'].",
                        id="scraper.E002",
                    )
                )
    for name in ("DOMAIN_MAX_CONCURRENCY", "BATCH_SIZE", "IMAGE_TASK_CHUNK_SIZE", "DOWNLOAD_THREADS"):
        if int(app_setting(name)) < 1:
            errors.append(Error(f"SCRAPER[{name!r}] must be at least 1", id="scraper.E003"))
    for name in ("CONNECT_TIMEOUT_S", "READ_TIMEOUT_S", "TOTAL_TIMEOUT_S", "DNS_TIMEOUT_S"):
        if not float(app_setting(name)) > 0:  # 0 or less would fail every request (None: no deadline at all)
            errors.append(Error(f"SCRAPER[{name!r}] must be a positive number of seconds", id="scraper.E005"))
    unknown = sorted(set(getattr(settings, "SCRAPER", None) or {}) - set(DEFAULTS))
    if unknown:
        errors.append(Error(f"Unknown SCRAPER settings: {', '.join(unknown)}", id="scraper.E004"))
    return errors
