from django.apps import apps
from django.urls import include, path

urlpatterns = [
    path("i18n/", include("django.conf.urls.i18n")),
    # Lookalike (docs/plugin.md): the API, personalised pages and campaign landing pages.
    path("", include("recommendations.urls")),
    path("", include("campaigns.urls")),
    path("", include(apps.get_app_config("oscar").urls[0])),
]
