from django.urls import path

from . import views

urlpatterns = [
    path("", views.overview, name="control-overview"),
    path("events/", views.event_log, name="control-events"),
    path("outputs/<int:pk>/override", views.override, name="control-override"),
]
