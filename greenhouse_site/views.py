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
        # The summary shows each rule's name, phase, last value and output: nothing of its sensor or place.
        "rules": Rule.objects.filter(enabled=True).select_related("output"),
    }
    return render(request, template, context)
