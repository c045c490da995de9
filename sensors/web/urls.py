from django.urls import path

from . import views

urlpatterns = [
    path("sensors/<str:device_id>/", views.sensor_page, name="sensor"),
    path("sensors/<str:device_id>/readings.csv", views.sensor_csv, name="sensor-csv"),
    path("locations/<int:pk>/", views.location_page, name="location"),
    path("api/locations/<int:pk>/history", views.location_history_api, name="location-history-api"),
    path("api/sensors/<str:device_id>/history", views.sensor_history_api, name="sensor-history-api"),
]
