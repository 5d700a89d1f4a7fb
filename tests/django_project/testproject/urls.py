"""HTTP routes of the sample project."""

from chat import views
from django.urls import path

urlpatterns = [
    path("", views.index),
    path("whoami/", views.whoami),
    path("visit/", views.visit),
]
