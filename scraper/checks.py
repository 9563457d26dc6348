"""System checks for the SCRAPER settings: the catalog models and fields the importer writes to."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register
from django.core.exceptions import FieldDoesNotExist

from scraper.conf import DEFAULTS, app_setting

REQUIRED_PRODUCT_ROLES = ("store", "external_id", "title")
REQUIRED_IMAGE_ROLES = ("product", "image")


@register()
def check_catalog(app_configs: Any, **kwargs: Any) -> list[Error]:
    from scraper.catalog import image_model, product_model, store_model

    errors: list[Error] = []
    try:
        models = {"product": product_model(), "image": image_model(), "store": store_model()}
    except (LookupError, ValueError) as error:
        return [
            Error(f"The catalog model the importer writes to cannot be found: {error}", id="scraper.E001")
        ]
    for kind, setting, required in (
        ("product", "PRODUCT_FIELDS", REQUIRED_PRODUCT_ROLES),
        ("image", "IMAGE_FIELDS", REQUIRED_IMAGE_ROLES),
    ):
        mapping = app_setting(setting)
        for role in required:
            try:
                models[kind]._meta.get_field(mapping.get(role) or "")
            except FieldDoesNotExist:
                errors.append(
                    Error(
                        f"SCRAPER[{setting!r}][{role!r}] = {mapping.get(role)!r} is not a field of "
                        f"{models[kind]._meta.label}",
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
