"""System checks for the RECOMMENDATIONS settings."""

from django.core.checks import Error, register

from recommendations.conf import app_setting


@register()
def check_settings(app_configs, **kwargs) -> list[Error]:
    errors = []
    if app_setting("PRODUCT_VECTOR") not in ("primary", "mean"):
        errors.append(Error("RECOMMENDATIONS['PRODUCT_VECTOR'] must be 'primary' or 'mean'.", id="recommendations.E002"))
    try:
        from recommendations.encoders import ENCODERS
    except ImportError:  # torch missing: the web tier may run without it, the workers may not
        return errors
    if app_setting("ENCODER") not in ENCODERS:
        errors.append(
            Error(
                f"RECOMMENDATIONS['ENCODER'] = {app_setting('ENCODER')!r} is not one of {sorted(ENCODERS)}",
                id="recommendations.E001",
            )
        )
    return errors
