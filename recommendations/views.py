"""Storefront pages of the recommendation app."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie

from lookalike.conf import base_template
from recommendations.conf import app_setting


@ensure_csrf_cookie
def search_by_photo(request: HttpRequest) -> HttpResponse:
    """Upload a photo, see similar products: the page posts to the image-search API from the browser."""
    return render(
        request,
        "recommendations/search_by_image.html",
        {
            "api_url": reverse("recommendations:api-search-by-image"),
            "max_bytes": app_setting("IMAGE_SEARCH_MAX_BYTES"),
            "limit": app_setting("SIMILAR_LIMIT") * 2,
            "base_template": base_template(),
        },
    )
