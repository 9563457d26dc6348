"""The project's URLs plus the trivial JSON view that bench/load.py measures as the framework's ceiling."""

from django.http import HttpRequest, JsonResponse
from django.urls import include, path


def ceiling(request: HttpRequest) -> JsonResponse:
    """What Django itself costs per request on this server: middleware, URL routing, a JSON response."""
    return JsonResponse({"ok": True})


urlpatterns = [path("bench/ceiling/", ceiling), path("", include("config.urls"))]
