from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from sensors import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("sensors/<str:mac>/", views.sensor_page, name="sensor"),
    path("sensors/<str:mac>/readings.csv", views.sensor_csv, name="sensor-csv"),
    path("locations/<int:pk>/", views.location_page, name="location"),
    path("api/locations/<int:pk>/history", views.location_history_api, name="location-history-api"),
    path("api/sensors/<str:mac>/history", views.sensor_history_api, name="sensor-history-api"),
    path("control/", include("control.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
]
