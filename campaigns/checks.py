"""System checks for the CAMPAIGNS settings."""

from __future__ import annotations

import re

from django.conf import settings
from django.core.checks import Error, Warning, register

from campaigns.conf import DEFAULTS, app_setting
from lookalike import checks as catalog_checks  # noqa: F401  the LOOKALIKE checks
from recommendations.ratelimit import is_rate_or_none

_POSITIVE = (
    "CACHE_TIMEOUT_S",
    "DEDUP_WINDOW_S",
    "ATTRIBUTION_MAX_AGE_S",
    "SESSION_COOKIE_MAX_AGE_S",
    "CREATIVE_MAX_BYTES",
    "CREATIVE_MAX_PIXELS",
    "BULK_MAX_FILES",
    "BULK_MAX_TOTAL_BYTES",
    "FETCH_TIMEOUT_S",
    "REQUEUE_INTERVAL_S",
)


@register()
def check_settings(app_configs, **kwargs) -> list[Error | Warning]:
    problems: list[Error | Warning] = []
    unknown = sorted(set(getattr(settings, "CAMPAIGNS", {})) - set(DEFAULTS))
    if unknown:
        problems.append(Warning(f"Unknown CAMPAIGNS keys {unknown} are ignored.", id="campaigns.W001"))
    for name in _POSITIVE:
        value = app_setting(name)
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            message = f"CAMPAIGNS[{name!r}] must be a positive number, not {value!r}."
            problems.append(Error(message, id="campaigns.E001"))
    try:
        re.compile(app_setting("BOT_USER_AGENT_PATTERN"))
    except (re.error, TypeError) as error:
        message = f"CAMPAIGNS['BOT_USER_AGENT_PATTERN'] is not a regular expression: {error}"
        problems.append(Error(message, id="campaigns.E002"))
    if app_setting("SESSION_COOKIE") == app_setting("ATTRIBUTION_COOKIE"):
        message = "CAMPAIGNS['SESSION_COOKIE'] and CAMPAIGNS['ATTRIBUTION_COOKIE'] must differ."
        problems.append(Error(message, id="campaigns.E003"))
    for name in ("CREATIVE_CACHE_S", "STOCK_RECHECK_S"):
        value = app_setting(name)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            message = f"CAMPAIGNS[{name!r}] must be a number of seconds (0: off), not {value!r}."
            problems.append(Error(message, id="campaigns.E006"))
    for name in ("LANDING_RATE", "CLICK_RATE", "EVENTS_RATE"):
        rate = app_setting(name)
        if not is_rate_or_none(rate):
            message = f"CAMPAIGNS[{name!r}] = {rate!r} is not a rate such as '120/minute' (or None)."
            problems.append(Error(message, id="campaigns.E004"))
    limits = app_setting("MAX_CONVERSIONS")
    if limits is not None and (
        not isinstance(limits, dict)
        or not set(limits) <= {"add_to_cart", "purchase"}
        or not all(value is None or (isinstance(value, int) and value >= 0) for value in limits.values())
    ):
        message = f"CAMPAIGNS['MAX_CONVERSIONS'] must map add_to_cart / purchase to counts, not {limits!r}."
        problems.append(Error(message, id="campaigns.E005"))
    return problems
