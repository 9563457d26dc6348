from django.urls import path

from shop import views

app_name = "shop"
urlpatterns = [
    path("", views.product_list, name="home"),
    path("category/<path:path>/", views.product_list, name="category"),
    path("products/<int:pk>/", views.product_detail, name="product"),
]
