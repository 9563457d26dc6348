from django.urls import path

from recommendations import api, views

app_name = "recommendations"
urlpatterns: list = [
    path("api/products/<int:pk>/similar/", api.SimilarProductsView.as_view(), name="api-similar-products"),
    path("api/search/by-image/", api.ImageSearchView.as_view(), name="api-search-by-image"),
    path("search/by-photo/", views.search_by_photo, name="search-by-photo"),
]
