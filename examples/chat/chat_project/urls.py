from chat import views
from django.urls import path, re_path

urlpatterns = [
    path("", views.lobby, name="lobby"),
    path("room/<str:room>/", views.room, name="room"),
    path("api/rooms/", views.rooms, name="rooms"),
    re_path(r"^static/(?P<path>.+)$", views.static_file),
]
