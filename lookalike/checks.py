"""System checks for ``LOOKALIKE``: every model installed, every declared role resolvable.

Registered by each of the three apps' ``ready()``; Django runs a registered check once however often it is
imported. Messages name the setting to fix.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register
from django.core.exceptions import FieldError

from lookalike import catalog
from lookalike.conf import DEFAULTS, FIELD_KEYS, REMOVED_SETTINGS, lookalike_setting, user_settings

REQUIRED_IMAGE_ROLES = ("product", "image")
INTEGER_KEYS = ("AutoField", "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField")


def _resolve_path(model: Any, path: str) -> str | None:
    """None when ``path`` reaches a field from ``model``, else what is missing."""
    for part in path.split("__"):
        try:
            field = model._meta.get_field(part)
        except Exception:
            return f"{model._meta.label} has no field {part!r}"
        if field.is_relation and field.related_model is not None:
            model = field.related_model
        elif part != path.split("__")[-1]:
            return f"{model._meta.label}.{part} is not a relation"
    return None


def _removed_settings() -> list[Error]:
    found = [name for name in REMOVED_SETTINGS if "[" not in name and hasattr(settings, name)]
    for name in REMOVED_SETTINGS:
        if "[" in name:
            dict_name, key = name[:-2].split("['")
            if key in (getattr(settings, dict_name, None) or {}):
                found.append(name)
    return [
        Error(
            f"{name} was replaced by {REMOVED_SETTINGS[name]}.",
            hint="See docs/plugin.md.",
            id="lookalike.E001",
        )
        for name in found
    ]


@register()
def check_catalog(app_configs: Any, **kwargs: Any) -> list[Error]:
    errors = _removed_settings()
    unknown = sorted(set(user_settings()) - set(DEFAULTS))
    if unknown:
        errors.append(Error(f"Unknown LOOKALIKE settings: {', '.join(unknown)}", id="lookalike.E002"))
    resolved: dict[str, Any] = {}
    for key in FIELD_KEYS.values():
        try:
            resolved[key] = catalog._model(key)
        except (LookupError, ValueError) as error:
            errors.append(
                Error(
                    f"LOOKALIKE[{key!r}] = {lookalike_setting(key)!r} is not an installed model ({error}).",
                    id="lookalike.E003",
                )
            )
    product = resolved.get("PRODUCT_MODEL")
    if product is not None and product._meta.pk.get_internal_type() not in INTEGER_KEYS:
        errors.append(
            Error(
                f"LOOKALIKE['PRODUCT_MODEL'] = {product._meta.label}: its primary key must be an integer.",
                id="lookalike.E004",
            )
        )
    for fields_key, model_key in FIELD_KEYS.items():
        model = resolved.get(model_key)
        if model is None:
            continue
        for role, value in lookalike_setting(fields_key).items():
            if value is None:
                if fields_key == "IMAGE_FIELDS" and role in REQUIRED_IMAGE_ROLES:
                    errors.append(
                        Error(f"LOOKALIKE['IMAGE_FIELDS'][{role!r}] is required.", id="lookalike.E005")
                    )
                continue
            if fields_key == "PRODUCT_FIELDS" and not isinstance(value, str):
                errors.extend(_check_expression(role))
                continue
            if not isinstance(value, str):
                errors.append(
                    Error(f"LOOKALIKE[{fields_key!r}][{role!r}] must be a field name.", id="lookalike.E006")
                )
                continue
            missing = _resolve_path(model, value)
            if missing:
                errors.append(
                    Error(
                        f"LOOKALIKE[{fields_key!r}][{role!r}] = {value!r}: {missing}.",
                        hint=f"Name a field of {model._meta.label} or set the role to None.",
                        id="lookalike.E007",
                    )
                )
    return errors


def _check_expression(role: str) -> list[Error]:
    try:
        value = catalog.product_role(role)
        # Resolving against the model finds a misspelt field without a database query.
        catalog.product_model()._default_manager.alias(**{f"{catalog.ALIAS_PREFIX}{role}": value})
    except (FieldError, LookupError, TypeError, AttributeError, ValueError) as error:
        return [
            Error(
                f"LOOKALIKE['PRODUCT_FIELDS'][{role!r}] cannot be used in a query: {error}",
                id="lookalike.E008",
            )
        ]
    return []
