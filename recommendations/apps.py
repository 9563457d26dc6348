from django.apps import AppConfig


class RecommendationsConfig(AppConfig):
    name = "recommendations"
    verbose_name = "Recommendations"
    # Its migrations were made with BigAutoField: a host's DEFAULT_AUTO_FIELD must not change them.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from recommendations import checks, receivers  # noqa: F401  registration side effects
