from django.apps import AppConfig


class ScraperConfig(AppConfig):
    name = "scraper"
    verbose_name = "Catalog import"

    def ready(self) -> None:
        from scraper import checks  # noqa: F401  registration side effects
