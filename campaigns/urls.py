from django.urls import path

from campaigns import views

app_name = "campaigns"
urlpatterns = [
    path("c/events/", views.events, name="events"),
    path("c/<slug:slug>/", views.landing, name="landing"),
    path("c/<slug:slug>/go/<int:product_id>/", views.go, name="go"),
    path("c/<slug:slug>/<slug:creative_slug>/", views.landing, name="creative_landing"),
]
