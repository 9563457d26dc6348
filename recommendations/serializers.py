"""Request parameters and answers of the similar-items API, validated here and documented in the schema."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from lookalike.catalog import role_id
from recommendations.conf import app_setting
from recommendations.matching import MATCH_MODES, SAME_COLOUR, SAME_KIND, SAME_PATTERN, SIMILAR
from recommendations.selectors import ProductCard, ProductFilter

MAX_LIMIT = 100
ANY = "any"
SAME = "same"


def _category_choice(
    value: str, *, allow_same: bool, allow_any: bool, what: str = "a category id"
) -> str | int:
    value = value.strip().lower()
    if value == SAME and allow_same:
        return SAME
    if value == ANY and allow_any:
        return ANY
    if value.isdigit() and int(value) > 0:
        return int(value)
    words = " or ".join([what, *([f"`{ANY}`"] if allow_any else []), *([f"`{SAME}`"] if allow_same else [])])
    raise serializers.ValidationError(f"Expected {words}, got {value!r}.")


class SimilarQuerySerializer(serializers.Serializer):
    """Query parameters of ``GET /api/products/{id}/similar/``."""

    limit = serializers.IntegerField(
        min_value=1,
        max_value=MAX_LIMIT,
        required=False,
        help_text="Number of results (default SIMILAR_LIMIT).",
    )
    # allow_null: a missing flag in a query string must mean "default", not False.
    in_stock = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="Only products in stock (default true)."
    )
    category = serializers.CharField(
        required=False,
        help_text="`any` (default), `same` (the product's own category) or a category id.",
    )
    exclude_category = serializers.CharField(
        required=False, help_text="A category id, or `same`, whose products are left out."
    )
    min_price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False)
    max_price = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=0, required=False)
    store = serializers.CharField(
        required=False,
        help_text="`same` (the product's own store; the default when SIMILAR_SAME_STORE is on), `any` or a "
        "store id.",
    )
    brand = serializers.CharField(required=False, max_length=200, help_text="Only products of this brand.")
    diversity = serializers.FloatField(
        min_value=0.0,
        max_value=1.0,
        required=False,
        default=0.0,
        help_text="0 = pure similarity; up to 1 trades similarity for variety (MMR re-ranking).",
    )
    match = serializers.ChoiceField(
        choices=MATCH_MODES,
        required=False,
        default=SIMILAR,
        help_text="`similar` (default): similar in colour and kind. `colourways`: the same style in other "
        "colours (needs the combined or adapted recipe to tell colours apart; see docs/similar-items.md).",
    )

    allow_same = True

    @property
    def needs_product(self) -> bool:
        """Whether the filter depends on the query product's own row (``same`` category)."""
        return SAME in (self.validated_data.get("category"), self.validated_data.get("exclude_category"))

    def validate_category(self, value: str) -> str | int:
        return _category_choice(value, allow_same=self.allow_same, allow_any=True)

    def validate_exclude_category(self, value: str) -> str | int:
        return _category_choice(value, allow_same=self.allow_same, allow_any=False)

    def validate_store(self, value: str) -> str | int:
        return _category_choice(value, allow_same=self.allow_same, allow_any=True, what="a store id")

    @property
    def same_store(self) -> bool | None:
        """Whether to keep to the product's own store: None leaves it to SIMILAR_SAME_STORE."""
        choice = self.validated_data.get("store")
        if choice is None:
            return None
        return choice == SAME

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        low, high = attrs.get("min_price"), attrs.get("max_price")
        if low is not None and high is not None and low > high:
            raise serializers.ValidationError({"max_price": "Must not be below min_price."})
        return attrs

    def product_filter(self, product: Any = None) -> ProductFilter:
        """The validated parameters as a ProductFilter (``same`` resolved against ``product``)."""
        data = self.validated_data

        def category_ids(choice: str | int | None) -> list[int]:
            if choice is None or choice == ANY:
                return []
            if choice == SAME:
                category_id = role_id(product, "category") if product is not None else None
                # A product without a category has no "same" category to keep or drop.
                return [category_id] if category_id is not None else []
            return [int(choice)]

        in_stock = data.get("in_stock")
        return ProductFilter(
            in_stock_only=app_setting("SIMILAR_IN_STOCK_ONLY") if in_stock is None else in_stock,
            category_ids=category_ids(data.get("category")),
            exclude_category_ids=category_ids(data.get("exclude_category")),
            min_price=data.get("min_price"),
            max_price=data.get("max_price"),
            store_ids=[data["store"]] if isinstance(data.get("store"), int) else [],
            brands=[data["brand"]] if data.get("brand") else [],
        )


class ImageSearchSerializer(SimilarQuerySerializer):
    """Multipart form of ``POST /api/search/by-image/``: the photo plus the same filters."""

    image = serializers.FileField(
        help_text="The photo: JPEG, PNG, WebP or GIF (checked by content, not name)."
    )

    allow_same = False  # there is no product to take "same" from
    match = None  # "other colours" is asked of a product, not of a photo

    class Meta:
        ref_name = "ImageSearchForm"


class EmbeddingSpaceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    encoder = serializers.CharField()
    dimensions = serializers.IntegerField()


class SimilarProductSerializer(serializers.Serializer):
    """One recommended product."""

    id = serializers.IntegerField(source="product.pk")
    title = serializers.CharField()
    url = serializers.CharField(help_text="The product page.")
    image_url = serializers.SerializerMethodField(help_text="Absolute URL of the product's first image.")
    price = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)
    currency = serializers.CharField()
    in_stock = serializers.BooleanField()
    brand = serializers.CharField()
    category = serializers.IntegerField(source="category_id", allow_null=True)
    store = serializers.IntegerField(source="store_id", allow_null=True)
    score = serializers.FloatField(help_text="Cosine similarity to the query (1 = identical).")
    match = serializers.ChoiceField(
        choices=["", SAME_COLOUR, SAME_PATTERN, SAME_KIND],
        help_text="Why it matched, in a word (empty when no word helps).",
    )

    def get_image_url(self, card: ProductCard) -> str | None:
        request = self.context.get("request")
        if card.image_url is None or request is None:
            return card.image_url
        return request.build_absolute_uri(card.image_url)


class SimilarProductsSerializer(serializers.Serializer):
    """The answer of both endpoints."""

    product = serializers.IntegerField(
        allow_null=True, help_text="The query product (null for image search)."
    )
    source = serializers.ChoiceField(
        choices=["precomputed", "index", "exact", "none"],
        help_text="How the answer was found: stored neighbours, the HNSW index, an exact scan, or not at all",
    )
    reason = serializers.CharField(
        allow_blank=True, help_text="Why the list is empty when it could not be computed."
    )
    space = EmbeddingSpaceSerializer(allow_null=True)
    match = serializers.ChoiceField(choices=MATCH_MODES, help_text="The match mode that answered.")
    count = serializers.IntegerField()
    results = SimilarProductSerializer(many=True)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Errors per field.",
    )
