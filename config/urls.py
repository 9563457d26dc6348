from typing import Any

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from config.auth import ThrottledAdminLoginForm
from recommendations.ratelimit import AddressRateThrottle

admin.site.login_form = ThrottledAdminLoginForm
# The app list already sits on the admin's home page and in the breadcrumbs; without the sidebar beside
# every page, changelists keep their columns readable at 1280 px.
admin.site.enable_nav_sidebar = False


class SchemaThrottle(AddressRateThrottle):
    """The OpenAPI schema is generated on every request (tens of milliseconds of CPU): public, so limited."""

    scope = "api-schema"

    def get_rate(self) -> str | None:
        return getattr(settings, "API_SCHEMA_RATE", "30/minute")


class OfflineRedocView(SpectacularRedocView):
    """ReDoc from the project's own static files. Its bundle also fetches a small logo from its maker's CDN;
    the page's Content-Security-Policy keeps the browser from sending that request at all (the page needs
    inline styles, an inline start-up script and blob: workers, all from this origin)."""

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().dispatch(request, *args, **kwargs)
        response["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'"
        )
        return response


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(throttle_classes=[SchemaThrottle]), name="api-schema"),
    path(
        "api/docs/",
        OfflineRedocView.as_view(url_name="api-schema", template_name="api/redoc.html"),
        name="api-docs",
    ),
    path("", include("recommendations.urls")),
    path("", include("campaigns.urls")),
    path("", include("shop.urls")),
]

if settings.SERVE_MEDIA:
    from config.media import media_urlpatterns

    urlpatterns += media_urlpatterns()
