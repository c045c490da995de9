"""Outputs and rules are edited in the admin (validated by their models' clean()); events are read-only."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from .models import Event, Output, Rule


class OutputForm(forms.ModelForm):
    """The device password is write-only: never rendered back; left blank, the stored one is kept."""

    device_password = forms.CharField(
        label="device password",
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored, never shown again. Leave blank to keep the current one; tick the box below to remove it.",
    )
    clear_device_password = forms.BooleanField(label="remove the stored device password", required=False)

    class Meta:
        model = Output
        fields = "__all__"

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("clear_device_password"):
            cleaned["device_password"] = ""
        elif not cleaned.get("device_password") and self.instance.pk:
            cleaned["device_password"] = self.instance.device_password
        self.instance.device_password = cleaned["device_password"]
        return cleaned


@admin.register(Output)
class OutputAdmin(admin.ModelAdmin):
    form = OutputForm
    list_display = ["name", "transport", "state_label", "changed_at", "change_reason", "delivered", "override_until"]
    readonly_fields = [
        "is_on",
        "changed_at",
        "change_reason",
        "wanted_on",
        "wanted_reason",
        "delivered",
        "confirmed_on",
        "confirmed_at",
        "unconfirmed_since",
        "last_error",
    ]
    fieldsets = [
        (None, {"fields": ["name", "transport"]}),
        (
            "HTTP (Shelly: GET http://IP/relay/0?turn=on; Tasmota: GET http://IP/cm?cmnd=Power%20On)",
            {
                "fields": [
                    "http_method",
                    "http_on_url",
                    "http_off_url",
                    "http_on_body",
                    "http_off_body",
                    "http_content_type",
                    "http_status_url",
                    "device_user",
                    "device_password",
                    "clear_device_password",
                ]
            },
        ),
        (
            "MQTT (Tasmota: topic cmnd/<device>/POWER, payloads ON/OFF)",
            {
                "fields": [
                    "mqtt_broker",
                    "mqtt_topic",
                    "mqtt_on_payload",
                    "mqtt_off_payload",
                    "mqtt_retain",
                    "mqtt_state_topic",
                ]
            },
        ),
        ("Safety", {"fields": ["safe_on", "min_on", "min_off", "keep_alive"]}),
        ("State (set by the control process)", {"fields": readonly_fields}),
    ]

    @admin.display(description="state")
    def state_label(self, output: Output) -> str:
        return output.state_label


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    list_display = ["name", "enabled", "target_label", "condition_label", "output", "phase", "last_value"]
    list_filter = ["enabled", "kind", "phase"]
    list_select_related = ["sensor", "location", "output"]
    readonly_fields = ["phase", "phase_since", "last_value", "last_age", "last_samples", "evaluated_at"]
    fieldsets = [
        (None, {"fields": ["name", "enabled", "kind"]}),
        ("What it watches", {"fields": ["sensor", "location", "metric", "offline_after"]}),
        ("Condition", {"fields": ["direction", "threshold", "release", "duration", "active_from", "active_until"]}),
        ("Data it may act on", {"fields": ["reads", "max_age", "min_samples"]}),
        ("Output", {"fields": ["output", "on_trigger", "on_release", "max_run"]}),
        ("Notifications", {"fields": ["notify_trigger", "notify_release", "email_to", "webhook_url", "cooldown"]}),
        ("State (set by the control process)", {"fields": readonly_fields}),
    ]


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["time", "kind", "rule", "output", "message", "value", "age", "ok"]
    list_filter = ["kind", "ok", "rule", "output"]
    search_fields = ["message", "detail"]
    date_hierarchy = "time"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
