"""Who may read: logged-in users, or anyone when PUBLIC_READ_ONLY is set for a trusted LAN."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, JsonResponse


def read_only_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Login required unless the owner made the read-only pages public; APIs answer 401, not a redirect."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if settings.PUBLIC_READ_ONLY or request.user.is_authenticated:
            return view(request, *args, **kwargs)
        if request.path.startswith("/api/"):
            return JsonResponse({"error": "login required"}, status=401)
        return redirect_to_login(request.get_full_path())

    return wrapped
