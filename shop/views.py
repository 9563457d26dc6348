"""The demo storefront: product listing (by category) and product pages."""

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from shop import storefront_cache
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
    scope = category.pk if category else 0
    paginator = Paginator(products, PAGE_SIZE)
    # The page number as Paginator.get_page resolves it (past the end: the last page), so that a client
    # asking for page 1, 01, 999999 or "x" reuses one of the listing's real pages in the cache.
    num_pages = storefront_cache.cached(f"shop:pages:{scope}", lambda: paginator.num_pages)
    try:
        number = min(max(int(request.GET.get("page") or 1), 1), num_pages)
    except ValueError:
        number = 1

    def listing() -> str:
        roots = Category.objects.filter(parent__isnull=True)
        categories = roots.prefetch_related("children").order_by("name")
        context = {"page": paginator.get_page(number), "category": category, "categories": categories}
        return render_to_string("shop/_product_listing.html", context, request=request)

    html = storefront_cache.cached(f"shop:listing:{scope}:{number}", listing)
    return render(request, "shop/product_list.html", {"category": category, "listing": mark_safe(html)})


def product_detail(request: HttpRequest, pk: int) -> HttpResponse:
    product = get_object_or_404(
        Product.objects.select_related("category", "store").with_primary_image(), pk=pk
    )
    return render(request, "shop/product_detail.html", {"product": product})
