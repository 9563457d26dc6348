from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"
    verbose_name = "Catalog"

    def ready(self) -> None:
        from shop import receivers  # noqa: F401  registration side effects
