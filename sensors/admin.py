"""The admin is where growers name sensors, place them, and set their calibration."""

from __future__ import annotations

import functools
from datetime import tzinfo

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest
from django.templatetags.static import static
from django.utils import timezone
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext

from .models import CurrentReading, Location, Placement, Reading, RefusedSensor, Sensor


@admin.register(Location)
class LocationAdmin(admin.ModelAdmin):
    list_display = ["name", "description"]
    search_fields = ["name"]


class PlacementInline(admin.TabularInline):
    """Where the sensor has stood; written by moving it (changing its location), never by hand."""

    model = Placement
    extra = 0
    fields = ["location", "start", "end"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@functools.cache
def _boolean_icon(value: bool) -> SafeString:
    """The admin's yes/no icon (as `admin.display(boolean=True)` draws it), built once per process, not per row."""
    return format_html('<img src="{}" alt="{}">', static(f"admin/img/icon-{'yes' if value else 'no'}.svg"), value)


def _move_action(location: Location | None):
    def move(modeladmin, request: HttpRequest, queryset: QuerySet[Sensor]) -> None:
        for sensor in queryset:
            sensor.move_to(location)
        modeladmin.message_user(
            request, f"Moved {queryset.count()} sensors to {location or 'no location'}.", messages.SUCCESS
        )

    name = f"move_to_{location.pk}" if location else "move_to_none"
    move.short_description = f"Move selected sensors to {location}" if location else "Remove selected from location"
    return move, name, move.short_description


class LocationFilter(admin.RelatedFieldListFilter):
    """By location, its choices from the locations the page reads once for its move actions."""

    def field_choices(self, field, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[int, str]]:
        return [(location.pk, str(location)) for location in SensorAdmin.locations(request)]


@admin.register(Sensor)
class SensorAdmin(admin.ModelAdmin):
    list_display = ["display_name", "device_id", "location", "seen", "online", "latest_values"]
    list_filter = ["source", ("location", LocationFilter)]
    list_select_related = ["location"]
    list_per_page = 100
    search_fields = ["device_id", "name"]
    readonly_fields = ["source", "first_seen", "last_seen", "last_peer", "offline_since"]
    inlines = [PlacementInline]
    fieldsets = [
        (None, {"fields": ["device_id", "source", "name", "location"]}),
        (
            "Calibration (applied when shown, never to stored data)",
            {"fields": ["soil_dry_raw", "soil_wet_raw", "temperature_offset", "humidity_offset"]},
        ),
        ("Seen", {"fields": ["first_seen", "last_seen", "last_peer", "offline_since"]}),
    ]

    def action_checkbox(self, sensor: Sensor, label: str | None = None) -> SafeString:
        """Django's own checkbox, written out: rendering its widget template 100 times was a third of this page.
        `label`: its translated label, when the caller looked it up once for the page."""
        label = format_html(label or gettext("Select this object for an action - {}"), str(sensor))
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            sensor.pk,
            label,
        )

    @admin.display(description="last seen", ordering="last_seen")
    def seen(self, sensor: Sensor, zone: tzinfo | None = None) -> SafeString | None:
        """In the pages' time zone (`zone`, when the caller looked it up once for the page), to the second,
        by strftime: Django's localized format cost 10 % of this page."""
        if sensor.last_seen is None:
            return None
        # One line, as the admin keeps its own date columns (its "nowrap" class).
        return format_html(
            '<span class="nowrap">{}</span>', timezone.localtime(sensor.last_seen, zone).strftime("%Y-%m-%d %H:%M:%S")
        )

    @admin.display(description="online")
    def online(self, sensor: Sensor) -> SafeString:
        return _boolean_icon(sensor.is_online())

    def get_queryset(self, request: HttpRequest) -> QuerySet[Sensor]:
        """The current values of the page's sensors in one query (one row per sensor and metric)."""
        # Only what the column shows: each timestamp left out is one conversion fewer (600 on a page).
        # As a plain list on each sensor (to_attr): a related manager's queryset per sensor, which Django
        # builds for a prefetch without it, was a query clone per row (100 a page, ~10 % of the page).
        current = Prefetch(
            "current_readings",
            queryset=CurrentReading.objects.only("sensor", "metric", "samples", "value_sum").order_by("metric"),
            to_attr=self.CURRENT,
        )
        return super().get_queryset(request).prefetch_related(current)

    CURRENT = "current_list"  # where get_queryset puts each sensor's current values

    @admin.display(description="latest values")
    def latest_values(self, sensor: Sensor) -> str:
        """Plain text, escaped once by the admin (format_html_join per value cost twice as much)."""
        current = getattr(sensor, self.CURRENT, None)
        if current is None:  # a sensor not read through get_queryset
            current = sensor.current_readings.order_by("metric")
        return ", ".join(
            f"{shown['label']} {shown['value']:.1f} {shown['unit']}" for shown in map(sensor.shown_value, current)
        )

    # The columns `result_rows` writes out, in this order (Django adds action_checkbox when there are actions).
    FAST_COLUMNS = ["display_name", "device_id", "location", "seen", "online", "latest_values"]
    _PK_SLOT = "0pk0"

    def result_rows(self, cl: ChangeList) -> list[list[SafeString]] | None:
        """The list's rows, one string each, exactly as the admin's `items_for_result` writes them.

        Django builds each of the 700 cells of a 100-sensor page through lookups, lazy
        translations and format_html; that was half of this page's time. The markup is pinned to
        Django's by tests/test_admin.py. None (Django renders the rows itself) for a popup, an
        editable list, or columns other than FAST_COLUMNS.
        """
        columns = [name for name in cl.list_display if name != "action_checkbox"]
        if cl.is_popup or cl.list_editable or columns != self.FAST_COLUMNS or cl.list_display_links != ["display_name"]:
            return None
        empty = conditional_escape(self.get_empty_value_display())
        # The change link reversed (and its preserved filters added) once, with a slot for each primary key.
        slot = self.model(pk=self._PK_SLOT)
        link = add_preserved_filters(
            {"preserved_filters": cl.preserved_filters, "opts": cl.opts}, cl.url_for_result(slot)
        )
        checkbox = "action_checkbox" in cl.list_display
        label = gettext("Select this object for an action - {}")  # looked up once, not once a row
        zone = timezone.get_current_timezone()
        rows = []
        for sensor in cl.result_list:
            url = conditional_escape(link.replace(self._PK_SLOT, quote(str(sensor.pk)), 1))
            cells = [f'<td class="action-checkbox">{self.action_checkbox(sensor, label)}</td>'] if checkbox else []
            seen, values = self.seen(sensor, zone), self.latest_values(sensor)
            place = conditional_escape(sensor.location) if sensor.location else empty
            cells += [
                f'<th class="field-display_name"><a href="{url}">{conditional_escape(sensor.display_name)}</a></th>',
                f'<td class="field-device_id">{conditional_escape(sensor.device_id)}</td>',
                f'<td class="field-location nowrap">{place}</td>',
                f'<td class="field-seen">{empty if seen is None else seen}</td>',
                f'<td class="field-online">{self.online(sensor)}</td>',
                f'<td class="field-latest_values">{conditional_escape(values) if values.strip() else empty}</td>',
            ]
            rows.append([mark_safe("".join(cells))])
        return rows

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        if not self.has_change_permission(request):  # moving a sensor changes it: view-only staff may not
            return actions
        for location in [*self.locations(request), None]:
            function, name, description = _move_action(location)
            actions[name] = (function, name, description)
        return actions

    @staticmethod
    def locations(request: HttpRequest) -> list[Location]:
        """Every location (to move sensors to, to filter by), read once per request: the change list asks
        for its actions three times a page and its filter once, and each read them again."""
        found = getattr(request, "_sensor_admin_locations", None)
        if found is None:
            found = request._sensor_admin_locations = list(Location.objects.all())
        return found

    def save_model(self, request: HttpRequest, obj: Sensor, form, change: bool) -> None:
        """Changing the location is a move: it closes the old placement and opens a new one."""
        moved = "location" in form.changed_data
        super().save_model(request, obj, form, change)
        if moved:
            obj.move_to(obj.location)


@admin.register(Reading)
class ReadingAdmin(admin.ModelAdmin):
    """Readings are measurements: shown, never edited by hand."""

    list_display = ["sensor", "metric", "start", "samples", "mean", "value_min", "value_max"]
    list_filter = ["metric"]
    list_select_related = ["sensor"]
    date_hierarchy = "start"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(RefusedSensor)
class RefusedSensorAdmin(admin.ModelAdmin):
    """Devices the collector refused (registration limits, or unknown in reject mode): register the real boards."""

    list_display = ["device_id", "reason", "lines", "first_refused", "last_refused", "last_peer"]
    list_filter = ["reason"]
    search_fields = ["device_id"]
    actions = ["register"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description="Register the selected devices as sensors", permissions=["add_sensor"])
    def register(self, request: HttpRequest, queryset: QuerySet[RefusedSensor]) -> None:
        ids = [refused.register().device_id for refused in queryset]
        self.message_user(request, f"Registered {len(ids)} sensors: {', '.join(ids)[:500]}.", messages.SUCCESS)

    def has_add_sensor_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("sensors.add_sensor")
