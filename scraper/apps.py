from django.apps import AppConfig


class ScraperConfig(AppConfig):
    name = "scraper"
    verbose_name = "Catalog import"
    # Its migrations were made with BigAutoField: a host's DEFAULT_AUTO_FIELD must not change them.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from scraper import checks  # noqa: F401  registration side effects
