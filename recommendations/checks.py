"""System checks for the RECOMMENDATIONS settings.

They run in every Django process, the web tier included, so they read the torch-free encoder registry:
importing ``recommendations.encoders`` would load torch (seconds, hundreds of MB) for nothing.
"""

from django.core.checks import Error, register

from recommendations.conf import app_setting
from recommendations.encoder_registry import ENCODER_INFO


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
    return errors
