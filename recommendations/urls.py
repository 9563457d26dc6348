from django.urls import path

from recommendations import api, personal_api, personal_views, views

app_name = "recommendations"
urlpatterns: list = [
    path("api/products/<int:pk>/similar/", api.SimilarProductsView.as_view(), name="api-similar-products"),
    path("api/search/by-image/", api.ImageSearchView.as_view(), name="api-search-by-image"),
    path("search/by-photo/", views.search_by_photo, name="search-by-photo"),
    path("for-you/", personal_views.for_you, name="for-you"),
    path("for-you/feedback/", personal_views.feedback, name="feedback"),
    path("for-you/go/<int:product_id>/", personal_views.go, name="go"),
    path("for-you/game/", personal_views.game, name="game"),
    path("api/recommendations/for-you/", personal_api.ForYouView.as_view(), name="api-for-you"),
    path("api/interactions/", personal_api.InteractionsView.as_view(), name="api-interactions"),
]
