"""Site-wide request hygiene."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest


class RejectNulBytesMiddleware:
    """A NUL character (``%00``) in a query parameter is answered 400.

    PostgreSQL refuses NUL in text and JSON values, so a parameter that reaches a query or a stored row
    (admin search, UTM values, a source name) would otherwise end in a 500. No legitimate link carries one.
    Form fields are covered by Django's own validator; bodies are not read here (uploads are refused early
    by their views).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        for name, values in request.GET.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                return HttpResponseBadRequest(
                    "Query parameters may not contain NUL characters.",
                    content_type="text/plain; charset=utf-8",
                )
        return self.get_response(request)
