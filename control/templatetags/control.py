"""{% rules_summary %}: the dashboard's small "Rules" section."""

from __future__ import annotations

from django import template

from control.models import Rule

register = template.Library()


@register.inclusion_tag("control/_rules_summary.html")
def rules_summary() -> dict:
    return {"rules": Rule.objects.filter(enabled=True).select_related("sensor", "location", "output")}
