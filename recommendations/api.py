"""REST API: similar items and image search (documented at /api/docs/ through drf-spectacular)."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from lookalike.catalog import product_model
from recommendations import cache
from recommendations.conf import app_setting
from recommendations.matching import SIMILAR
from recommendations.ratelimit import AddressRateThrottle, Busy, concurrency_slot
from recommendations.selectors import (
    NO_ACTIVE_SPACE,
    NONE,
    ProductCard,
    SimilarProducts,
    active_space,
    find_similar_products,
    product_cards,
    search_near_vector,
)
from recommendations.serializers import (
    ErrorSerializer,
    ImageSearchSerializer,
    SimilarProductsSerializer,
    SimilarQuerySerializer,
)

# Multipart boundaries and headers around the photo: a request this much larger than the photo limit
# cannot hold an acceptable photo and is refused before its body is read.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
ACCEPTED_IMAGE_TYPES = "JPEG, PNG, WebP or GIF"


def _error(code: int, detail: str, errors: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"detail": detail}
    if errors:
        body["errors"] = errors
    return Response(body, status=code)


def _answer(
    request: Request, result: SimilarProducts, *, product_id: int | None, match: str = SIMILAR
) -> Response:
    return Response(_answer_data(request, result, product_id=product_id, match=match))


def _answer_data(
    request: Request, result: SimilarProducts, *, product_id: int | None, match: str = SIMILAR
) -> dict[str, Any]:
    cards = product_cards(result.items)
    space = result.space
    return {
        "product": product_id,
        "source": result.source,
        "reason": result.reason,
        "space": (
            {"id": space.pk, "encoder": space.encoder, "dimensions": space.dimensions} if space else None
        ),
        "match": match,
        "count": len(cards),
        "results": [_card_data(card, request) for card in cards],
    }


def _card_data(card: ProductCard, request: Request) -> dict[str, Any]:
    """One result as ``SimilarProductSerializer`` documents it, built directly: a DRF serializer costs
    more than the similarity query it reports on."""
    return {
        "id": card.product.pk,
        "title": card.title,
        "url": card.url,
        "image_url": request.build_absolute_uri(card.image_url) if card.image_url else None,
        "price": None if card.price is None else f"{card.price:.2f}",
        "currency": card.currency,
        "in_stock": card.in_stock,
        "brand": card.brand,
        "category": card.category_id,
        "store": card.store_id,
        "score": round(float(card.score), 6),
        "match": card.match,
    }


def sniff_image_type(data: bytes) -> str | None:
    """The image format from the file's first bytes (its name and declared content type are not trusted)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


class ImageSearchThrottle(AddressRateThrottle):
    """Each search runs the image model: IMAGE_SEARCH_RATE (e.g. "60/minute") per client address."""

    scope = "image_search"

    def get_rate(self) -> str | None:
        return app_setting("IMAGE_SEARCH_RATE")


class SimilarProductsThrottle(AddressRateThrottle):
    scope = "similar"

    def get_rate(self) -> str | None:
        return app_setting("SIMILAR_RATE")


class SimilarProductsView(APIView):
    throttle_classes = [SimilarProductsThrottle]

    @extend_schema(
        operation_id="similar_products",
        summary="Products that look like this one",
        description=(
            "Visually similar products, best first, with cosine similarity scores. Excludes the product "
            "itself and products showing one of its photos. A product without an embedding yet answers 200 "
            "with an empty list and a `reason`. `match=colourways` asks for the same style in other "
            "colours; each result's `match` says in a word why it matched."
        ),
        tags=["similar items"],
        parameters=[SimilarQuerySerializer],
        responses={
            200: SimilarProductsSerializer,
            400: OpenApiResponse(ErrorSerializer, description="Invalid parameters (errors per field)."),
            404: OpenApiResponse(ErrorSerializer, description="No such product."),
            429: OpenApiResponse(ErrorSerializer, description="More requests than SIMILAR_RATE allows."),
        },
    )
    def get(self, request: Request, pk: int) -> HttpResponseBase:
        query = SimilarQuerySerializer(data=request.query_params)
        # Without parameters (the widget's call, most of the traffic) a cache hit needs no validation.
        params: tuple[Any, ...] = ()
        if request.query_params:
            if not query.is_valid():
                return _error(status.HTTP_400_BAD_REQUEST, "Invalid parameters.", query.errors)
            params = tuple(sorted(query.validated_data.items()))
        if not isinstance(request.accepted_renderer, JSONRenderer):  # the browsable API: not cached
            return Response(self.similar(request, pk, query))
        # The rendered JSON, per product and parameters, until the catalog changes (recommendations.cache).
        # The image URLs in it are absolute: the host is part of the key.
        key = cache.entry_key("similar-api", pk, params, request.build_absolute_uri("/"))
        body = cache.cached(key, lambda: JSONRenderer().render(self.similar(request, pk, query)))
        return HttpResponse(body, content_type="application/json")

    def similar(self, request: Request, pk: int, query: SimilarQuerySerializer) -> dict[str, Any]:
        query.is_valid(raise_exception=True)  # validated already, unless it had no parameters
        products = product_model()._default_manager.all()
        # The product row itself is only needed for "same category"; otherwise its id is enough, and an
        # unknown id shows as "no vector", checked below (one query less on every product page).
        product = get_object_or_404(products, pk=pk) if query.needs_product else None
        result = find_similar_products(
            product=product if product is not None else pk,
            limit=query.validated_data.get("limit"),
            filters=query.product_filter(product),
            diversity=query.validated_data["diversity"],
            same_store=query.same_store,
            match=query.validated_data["match"],
            explain=True,
        )
        if result.source == NONE and product is None:
            get_object_or_404(products, pk=pk)
        return _answer_data(request, result, product_id=pk, match=query.validated_data["match"])


class ImageSearchView(APIView):
    parser_classes = [MultiPartParser, FormParser]
    throttle_classes = [ImageSearchThrottle]

    @extend_schema(
        operation_id="search_by_image",
        summary="Products that look like an uploaded photo",
        description=(
            f"Send a photo ({ACCEPTED_IMAGE_TYPES}; the type is read from the content, not the file name) as "
            "the multipart field `image`, with the same optional filters as the similar-items endpoint "
            "(`category=same` excepted). Too large a file or too many pixels (PNG, WebP and GIF are decoded "
            "whole: up to IMAGE_SEARCH_MAX_DECODE_PIXELS): 413; not a supported image: 415; a damaged image "
            "or bad parameters: 400."
        ),
        tags=["similar items"],
        request={"multipart/form-data": ImageSearchSerializer},
        responses={
            200: SimilarProductsSerializer,
            400: OpenApiResponse(
                ErrorSerializer, description="Missing or damaged image, or invalid parameters."
            ),
            413: OpenApiResponse(
                ErrorSerializer,
                description="File larger than IMAGE_SEARCH_MAX_BYTES, or "
                "more pixels than IMAGE_SEARCH_MAX_PIXELS.",
            ),
            415: OpenApiResponse(ErrorSerializer, description=f"Not a {ACCEPTED_IMAGE_TYPES} image."),
            429: OpenApiResponse(ErrorSerializer, description="More searches than IMAGE_SEARCH_RATE allows."),
            503: OpenApiResponse(
                ErrorSerializer, description="IMAGE_SEARCH_CONCURRENCY searches running; retry after a while."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        max_bytes = int(app_setting("IMAGE_SEARCH_MAX_BYTES"))
        too_large = f"Photos up to {max_bytes:,} bytes are accepted."
        declared_bytes = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared_bytes > max_bytes + MULTIPART_OVERHEAD_BYTES:
            return _error(
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                f"The upload is {declared_bytes:,} bytes. {too_large}",
            )
        form = ImageSearchSerializer(data=request.data)
        if not form.is_valid():
            return _error(status.HTTP_400_BAD_REQUEST, "Invalid parameters.", form.errors)
        upload = form.validated_data["image"]
        if upload.size > max_bytes:
            return _error(
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"The photo is {upload.size:,} bytes. {too_large}"
            )
        data = upload.read()
        if sniff_image_type(data) is None:
            return _error(
                status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                f"The file is not a {ACCEPTED_IMAGE_TYPES} image (its content was checked, not its name).",
            )
        # imaging and services import torch: only this endpoint, not every API module user, pays for it.
        from recommendations import imaging

        try:
            info = imaging.image_info(data)
        except imaging.BadImage as error:
            return _error(status.HTTP_400_BAD_REQUEST, f"The photo cannot be read: {error.reason}.")
        max_pixels = int(app_setting("IMAGE_SEARCH_MAX_PIXELS"))
        if info.width * info.height > max_pixels:
            return _error(
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                f"The photo is {info.width}x{info.height} pixels; up to {max_pixels:,} pixels are accepted.",
            )
        if active_space() is None:
            return _answer(
                request, SimilarProducts(items=[], source=NONE, reason=NO_ACTIVE_SPACE), product_id=None
            )
        from recommendations import services

        try:
            with concurrency_slot(
                "image-search",
                slots=int(app_setting("IMAGE_SEARCH_CONCURRENCY")),
                lease_s=60,
                wait_s=float(app_setting("IMAGE_SEARCH_QUEUE_S")),
            ):
                space, vector = services.embed_query_image(
                    data, max_decode_pixels=app_setting("IMAGE_SEARCH_MAX_DECODE_PIXELS")
                )
        except Busy:
            response = _error(
                status.HTTP_503_SERVICE_UNAVAILABLE, "Too many image searches right now; try again shortly."
            )
            response["Retry-After"] = "5"
            return response
        except imaging.ImageTooLarge as error:
            too_many_pixels = f"The photo is too large: {error.reason}."
            return _error(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, too_many_pixels)
        except imaging.BadImage as error:
            return _error(status.HTTP_400_BAD_REQUEST, f"The photo cannot be read: {error.reason}.")
        except services.NoActiveSpace:  # retired between the check above and now
            return _answer(
                request, SimilarProducts(items=[], source=NONE, reason=NO_ACTIVE_SPACE), product_id=None
            )
        result = search_near_vector(
            vector=vector,
            limit=form.validated_data.get("limit"),
            filters=form.product_filter(),
            space=space,
            diversity=form.validated_data["diversity"],
        )
        return _answer(request, result, product_id=None)
