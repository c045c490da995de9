from django.contrib import admin
from django.urls import path

from sensors import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/sensors/<str:mac>/history", views.sensor_history_api, name="sensor-history-api"),
]
