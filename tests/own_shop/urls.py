from django.urls import include, path

urlpatterns = [path("", include("recommendations.urls")), path("", include("campaigns.urls"))]
