"""The demo storefront: product listing (by category) and product pages."""

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from shop.models import Category, Product

PAGE_SIZE = 24


def product_list(request: HttpRequest, path: str | None = None) -> HttpResponse:
    # New arrivals first, as shops list them (sorting by title filled page one with one colour's products).
    products = (
        Product.objects.select_related("category")
        .with_primary_image()
        .order_by("-in_stock", "-created_at", "-pk")
    )
    category = None
    if path:
        category = get_object_or_404(Category, path=path.strip("/") + "/")
        products = products.in_category(category)
    page = Paginator(products, PAGE_SIZE).get_page(request.GET.get("page"))
    categories = Category.objects.filter(parent__isnull=True).prefetch_related("children").order_by("name")
    return render(
        request, "shop/product_list.html", {"page": page, "category": category, "categories": categories}
    )


def product_detail(request: HttpRequest, pk: int) -> HttpResponse:
    product = get_object_or_404(
        Product.objects.select_related("category", "store").with_primary_image(), pk=pk
    )
    return render(request, "shop/product_detail.html", {"product": product})
