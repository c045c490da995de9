"""The sensor list's rows written by SensorAdmin.result_rows, in Django's own results template."""

from __future__ import annotations

from django import template
from django.contrib.admin.templatetags import admin_list
from django.contrib.admin.views.main import ChangeList

register = template.Library()


@register.inclusion_tag("admin/change_list_results.html")
def sensor_result_list(cl: ChangeList) -> dict:
    """Django's `result_list` context, with the rows from the model admin when it writes them."""
    rows = cl.model_admin.result_rows(cl)
    if rows is None:
        return admin_list.result_list(cl)
    headers = list(admin_list.result_headers(cl))
    return {
        "cl": cl,
        "result_hidden_fields": [],
        "result_headers": headers,
        "num_sorted_fields": sum(1 for header in headers if header["sortable"] and header["sorted"]),
        "results": rows,
    }
