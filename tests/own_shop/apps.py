from django.apps import AppConfig


class OwnShopConfig(AppConfig):
    name = "tests.own_shop"
    label = "catalogue"
    default_auto_field = "django.db.models.BigAutoField"
