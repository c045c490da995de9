from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from greenhouse_site.views import dashboard

urlpatterns = [
    path("", dashboard, name="dashboard"),
    path("", include("sensors.web.urls")),
    path("control/", include("control.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # Browsers ask for /favicon.ico on every page that names none (the admin, plain errors).
    path("favicon.ico", RedirectView.as_view(url=static("greenhouse/favicon.svg"))),
]
