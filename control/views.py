"""Thin views: the control overview, the event log (both behind a login), and the manual override (a permission)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from .models import Event, Output, Rule

OVERRIDE_STATES = {"on": True, "off": False, "auto": None}
MAX_OVERRIDE_MINUTES = 24 * 60
MAX_ID = 2**63 - 1  # the database's bigint


def whole_number(text: str, low: int, high: int) -> int | None:
    """`text` as an int within [low, high], or None: ASCII digits only ("²" is a digit to str.isdigit)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        return None
    number = int(text)
    return number if low <= number <= high else None


@login_required  # never public, even with PUBLIC_READ_ONLY: outputs, user names, device answers
def overview(request: HttpRequest) -> HttpResponse:
    """Each output's state (with the override form for staff), each rule's state, the latest events."""
    return render(
        request,
        "control/overview.html",
        {
            "outputs": Output.objects.all(),
            "rules": Rule.objects.select_related("sensor", "location", "output"),
            "events": Event.objects.select_related("rule", "output")[:20],
            "override_minutes": settings.CONTROL_OVERRIDE_MINUTES,
            "max_override_minutes": MAX_OVERRIDE_MINUTES,
        },
    )


@login_required
def event_log(request: HttpRequest) -> HttpResponse:
    """Every trigger, release, command and notification, newest first; ?rule=<id> or ?output=<id> narrows it."""
    events = Event.objects.select_related("rule", "output")
    for name in ("rule", "output"):
        value = request.GET.get(name, "")
        if value:
            number = whole_number(value, 1, MAX_ID)
            if number is None:
                return HttpResponseBadRequest(f"{name} must be an id (a whole number)", content_type="text/plain")
            events = events.filter(**{f"{name}_id": number})
    page = Paginator(events, 100).get_page(request.GET.get("page"))
    return render(request, "control/events.html", {"page": page})


@require_POST
def override(request: HttpRequest, pk: int) -> HttpResponse:
    """Switch an output by hand for a while (state=on|off), or hand it back to its rules (state=auto).

    Needs the permission control.override_output (superusers and the Growers group have it).
    """
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not request.user.has_perm("control.override_output"):
        return HttpResponseForbidden(
            "You may not switch outputs by hand (the permission control.override_output, e.g. the Growers group).",
            content_type="text/plain",
        )
    output = get_object_or_404(Output, pk=pk)
    state = request.POST.get("state", "")
    if state not in OVERRIDE_STATES:
        return HttpResponseBadRequest("state must be on, off or auto", content_type="text/plain")
    minutes = whole_number(
        request.POST.get("minutes") or str(settings.CONTROL_OVERRIDE_MINUTES), 1, MAX_OVERRIDE_MINUTES
    )
    if minutes is None:
        return HttpResponseBadRequest(
            f"minutes must be a whole number from 1 to {MAX_OVERRIDE_MINUTES}", content_type="text/plain"
        )
    event = output.request_override(OVERRIDE_STATES[state], request.user.get_username(), minutes)
    messages.success(request, f"{event.message}; the control process carries it out within seconds.")
    return redirect("control-overview")
