from django.contrib import admin

from .models import Location, Reading, Sensor


@admin.register(Location)
class LocationAdmin(admin.ModelAdmin):
    list_display = ["name", "description"]
    search_fields = ["name"]


@admin.register(Sensor)
class SensorAdmin(admin.ModelAdmin):
    list_display = ["display_name", "mac", "location", "last_seen", "last_peer"]
    list_filter = ["location"]
    search_fields = ["mac", "name"]
    readonly_fields = ["first_seen", "last_seen", "last_peer"]


@admin.register(Reading)
class ReadingAdmin(admin.ModelAdmin):
    """Readings are measurements: shown, never edited by hand."""

    list_display = ["sensor", "metric", "start", "samples", "mean", "value_min", "value_max"]
    list_filter = ["metric"]
    list_select_related = ["sensor"]
    date_hierarchy = "start"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
