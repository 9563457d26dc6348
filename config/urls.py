from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from config.auth import ThrottledAdminLoginForm

admin.site.login_form = ThrottledAdminLoginForm

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("recommendations.urls")),
    path("", include("campaigns.urls")),
    path("", include("shop.urls")),
]

if settings.SERVE_MEDIA:
    from config.media import media_urlpatterns

    urlpatterns += media_urlpatterns()
