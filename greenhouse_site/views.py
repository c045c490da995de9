"""The site's home page: the dashboard, which shows what both apps know.

It lives in the project rather than in an app so that the apps never import each other
backwards: control depends on sensors, and only the project composes the two.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from control.models import Rule
from greenhouse_site.access import read_only_page
from sensors.web.dashboard import location_cards


@read_only_page
def dashboard(request: HttpRequest) -> HttpResponse:
    """Every location with its sensors' latest minute, and the rules' states; `?partial=1`: the refreshing body."""
    template = "_dashboard_body.html" if request.GET.get("partial") else "dashboard.html"
    context = {
        "groups": location_cards(),
        # The summary shows each rule's name, phase and last value and its output's name and state:
        # 5 of 34 columns (and 2 of 39), nothing of its sensor or place.
        "rules": Rule.objects.filter(enabled=True)
        .select_related("output")
        .only("name", "phase", "last_value", "output__name", "output__is_on"),
    }
    return render(request, template, context)
