"""System checks for the RECOMMENDATIONS settings.

They run in every Django process, the web tier included, so they read the torch-free encoder registry:
importing ``recommendations.encoders`` would load torch (seconds, hundreds of MB) for nothing.
"""

from django.core.checks import Error, register

from lookalike import checks as catalog_checks  # noqa: F401  the LOOKALIKE checks
from recommendations.conf import app_setting
from recommendations.encoder_registry import ENCODER_INFO
from recommendations.profiles import STRATEGIES
from recommendations.ratelimit import is_rate_or_none

RATE_SETTINGS = ("IMAGE_SEARCH_RATE", "SIMILAR_RATE", "PERSONAL_RATE")


@register()
def check_settings(app_configs, **kwargs) -> list[Error]:
    errors = []
    if app_setting("PRODUCT_VECTOR") not in ("primary", "mean"):
        errors.append(
            Error("RECOMMENDATIONS['PRODUCT_VECTOR'] must be 'primary' or 'mean'.", id="recommendations.E002")
        )
    if app_setting("ENCODER") not in ENCODER_INFO:
        encoder = app_setting("ENCODER")
        errors.append(
            Error(
                f"RECOMMENDATIONS['ENCODER'] = {encoder!r} is not one of {sorted(ENCODER_INFO)}",
                id="recommendations.E001",
            )
        )
    for name in ("PROFILE_STRATEGY", "GAME_PROFILE_STRATEGY"):
        if app_setting(name) not in STRATEGIES:
            errors.append(
                Error(
                    f"RECOMMENDATIONS[{name!r}] = {app_setting(name)!r} is not one of {list(STRATEGIES)}",
                    id="recommendations.E003",
                )
            )
    if app_setting("EXPLORE_MODE") not in ("diverse", "random"):
        errors.append(
            Error("RECOMMENDATIONS['EXPLORE_MODE'] must be 'diverse' or 'random'.", id="recommendations.E004")
        )
    ratio = app_setting("EXPLORE_RATIO")
    if not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
        errors.append(
            Error("RECOMMENDATIONS['EXPLORE_RATIO'] must be a number from 0 to 1.", id="recommendations.E005")
        )
    for name in RATE_SETTINGS:
        rate = app_setting(name)
        if not is_rate_or_none(rate):
            message = f"RECOMMENDATIONS[{name!r}] = {rate!r} is not a rate such as '60/minute' (or None)."
            errors.append(Error(message, id="recommendations.E006"))
    slots = app_setting("IMAGE_SEARCH_CONCURRENCY")
    if not isinstance(slots, int) or isinstance(slots, bool) or slots < 1:
        message = f"RECOMMENDATIONS['IMAGE_SEARCH_CONCURRENCY'] must be a whole number ≥ 1, not {slots!r}."
        errors.append(Error(message, id="recommendations.E007"))
    return errors + _recipe_errors()


def _whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _recipe_errors() -> list[Error]:
    errors = []
    if app_setting("RECIPE") not in ("combined", "cnn"):
        message = f"RECOMMENDATIONS['RECIPE'] must be 'combined' or 'cnn', not {app_setting('RECIPE')!r}."
        errors.append(Error(message, id="recommendations.E008"))
    weights = app_setting("RECIPE_WEIGHTS")
    parts = ("cnn", "colour", "pattern")
    if (
        not isinstance(weights, dict)
        or set(weights) - set(parts)
        or not all(
            isinstance(weights.get(part, 0), int | float) and weights.get(part, 0) >= 0 for part in parts
        )
        or not any(weights.get(part, 0) for part in parts)
    ):
        message = (
            f"RECOMMENDATIONS['RECIPE_WEIGHTS'] = {weights!r} must map {', '.join(parts)} to numbers ≥ 0, "
            "not all zero."
        )
        errors.append(Error(message, id="recommendations.E009"))
    # pgvector's HNSW index takes halfvec up to 4,000 dimensions.
    for name, low, high in (
        ("ADAPT_DIMENSIONS", 8, 4000),
        ("ADAPT_HIDDEN", 8, 16384),
        ("ADAPT_EPOCHS", 1, 1000),
        ("ADAPT_MIN_PRODUCTS", 2, 10**9),
    ):
        value = app_setting(name)
        if not _whole(value, low, high):
            message = f"RECOMMENDATIONS[{name!r}] must be a whole number from {low} to {high}, not {value!r}."
            errors.append(Error(message, id="recommendations.E010"))
    share = app_setting("ADAPT_VALIDATION_SHARE")
    if not isinstance(share, int | float) or isinstance(share, bool) or not 0 < share < 1:
        message = (
            f"RECOMMENDATIONS['ADAPT_VALIDATION_SHARE'] must be a number between 0 and 1, not {share!r}."
        )
        errors.append(Error(message, id="recommendations.E011"))
    return errors
