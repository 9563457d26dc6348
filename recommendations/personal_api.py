"""REST API of personalisation: recording interactions and "recommended for you" (documented at /api/docs/).

Both endpoints identify the shopper by the Django session (anonymous shoppers included), so they are meant
for the shop's own pages; unsafe requests need the CSRF token like any form of the site.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from lookalike.catalog import product_model
from recommendations import interactions, personalisation, profiles
from recommendations.conf import app_setting
from recommendations.models import Interaction
from recommendations.ratelimit import AddressRateThrottle
from recommendations.selectors import product_cards
from recommendations.serializers import ErrorSerializer, SimilarProductSerializer

MAX_LIMIT = 100


class ShopperSessionAuthentication(SessionAuthentication):
    """Session authentication that checks CSRF for anonymous shoppers too: an interaction changes what the
    shopper is shown, so another site must not be able to post one on their behalf."""

    def authenticate(self, request: Request) -> Any:
        result = super().authenticate(request)
        if result is None:
            self.enforce_csrf(request)
        return result


class ShopperSessionScheme(SessionScheme):
    """Documents ``ShopperSessionAuthentication`` as the session cookie it is (registered by subclassing)."""

    target_class = "recommendations.personal_api.ShopperSessionAuthentication"
    name = "shopperSession"


class InteractionInSerializer(serializers.Serializer):
    product = serializers.IntegerField(min_value=1, help_text="The product's id.")
    kind = serializers.ChoiceField(choices=Interaction.Kind.choices)
    source = serializers.CharField(
        max_length=64, required=False, allow_blank=True, default="", help_text="The page or widget."
    )

    def validate_product(self, value: int) -> int:
        if not product_model()._default_manager.filter(pk=value).exists():
            raise serializers.ValidationError("No such product.")
        return value


class InteractionOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    product = serializers.IntegerField(source="product_id")
    kind = serializers.CharField()
    source = serializers.CharField()
    created_at = serializers.DateTimeField()


class ForYouQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, required=False, default=8)
    strategy = serializers.ChoiceField(
        choices=list(profiles.STRATEGIES),
        required=False,
        help_text="Profile strategy (default PROFILE_STRATEGY).",
    )


class ForYouSerializer(serializers.Serializer):
    basis = serializers.ChoiceField(
        choices=[personalisation.PURCHASES, personalisation.PROFILE, personalisation.NOTHING],
        help_text="purchases: neighbours of what the shopper bought; profile: nearest to what they browsed "
        "and "
        "liked; none: no history yet (empty results).",
    )
    strategy = serializers.CharField()
    count = serializers.IntegerField()
    results = SimilarProductSerializer(many=True)


def _error(code: int, detail: str, errors: dict[str, Any] | None = None) -> Response:
    return Response({"detail": detail, **({"errors": errors} if errors else {})}, status=code)


class PersonalThrottle(AddressRateThrottle):
    scope = "personal"

    def get_rate(self) -> str | None:
        return app_setting("PERSONAL_RATE")


class InteractionsView(APIView):
    throttle_classes = [PersonalThrottle]
    authentication_classes = [ShopperSessionAuthentication]

    @extend_schema(
        operation_id="record_interaction",
        summary="Record what the shopper did with a product",
        description=(
            "Records a view, click, like, dislike, add_to_cart or purchase for the current shopper (the "
            "session: anonymous shoppers get one). Send the CSRF token (X-CSRFToken header)."
        ),
        tags=["personalisation"],
        request=InteractionInSerializer,
        responses={
            201: InteractionOutSerializer,
            400: OpenApiResponse(ErrorSerializer, description="Unknown product or kind (errors per field)."),
            403: OpenApiResponse(ErrorSerializer, description="Missing or wrong CSRF token."),
        },
    )
    def post(self, request: Request) -> Response:
        form = InteractionInSerializer(data=request.data)
        if not form.is_valid():
            return _error(status.HTTP_400_BAD_REQUEST, "Invalid interaction.", form.errors)
        shopper = interactions.shopper_for_request(request._request)
        assert shopper is not None
        interaction = interactions.record_interaction(
            shopper=shopper,
            product=form.validated_data["product"],
            kind=form.validated_data["kind"],
            source=form.validated_data["source"],
        )
        return Response(InteractionOutSerializer(interaction).data, status=status.HTTP_201_CREATED)


class ForYouView(APIView):
    throttle_classes = [PersonalThrottle]
    authentication_classes = [ShopperSessionAuthentication]

    @extend_schema(
        operation_id="recommended_for_you",
        summary="Products recommended for the current shopper",
        description=(
            "Neighbours of the shopper's purchases (merged, de-duplicated, never a purchased product); "
            "without "
            "purchases, the products nearest to their profile; without any history, an empty list "
            "(basis `none`). Nothing is remembered as shown."
        ),
        tags=["personalisation"],
        parameters=[ForYouQuerySerializer],
        responses={
            200: ForYouSerializer,
            400: OpenApiResponse(ErrorSerializer, description="Invalid parameters (errors per field)."),
        },
    )
    def get(self, request: Request) -> Response:
        query = ForYouQuerySerializer(data=request.query_params)
        if not query.is_valid():
            return _error(status.HTTP_400_BAD_REQUEST, "Invalid parameters.", query.errors)
        shopper = interactions.shopper_for_request(request._request, create=False)
        result = personalisation.recommended_for_you(
            shopper=shopper,
            limit=query.validated_data["limit"],
            strategy=query.validated_data.get("strategy"),
        )
        cards = product_cards(result.items)
        return Response(
            {
                "basis": result.basis,
                "strategy": result.strategy,
                "count": len(cards),
                "results": SimilarProductSerializer(cards, many=True, context={"request": request}).data,
            }
        )
