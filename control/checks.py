"""Control configuration mistakes as Django system checks (shown by every manage.py command)."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, register


@register()
def control_settings_check(app_configs, **kwargs) -> list[Error]:
    errors = []
    for name in ("CONTROL_INTERVAL", "CONTROL_COMMAND_TIMEOUT", "CONTROL_RETRY_MAX", "CONTROL_UNCONFIRMED_ALERT"):
        if getattr(settings, name) <= 0:
            errors.append(Error(f"{name} must be a positive number of seconds.", id="control.E001"))
    if not 1 <= settings.CONTROL_COMMAND_ATTEMPTS <= 10:
        errors.append(Error("CONTROL_COMMAND_ATTEMPTS must be between 1 and 10.", id="control.E002"))
    if settings.CONTROL_OVERRIDE_MINUTES < 1:
        errors.append(Error("CONTROL_OVERRIDE_MINUTES must be at least 1.", id="control.E003"))
    for address in settings.CONTROL_NOTIFY_EMAILS:
        if "@" not in address:
            errors.append(Error(f"CONTROL_NOTIFY_EMAILS: {address!r} is not an e-mail address.", id="control.E004"))
    webhook = settings.CONTROL_NOTIFY_WEBHOOK
    if webhook:
        parts = urlsplit(webhook)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            errors.append(
                Error(
                    f"CONTROL_NOTIFY_WEBHOOK={webhook!r} is not a URL like https://hooks.example/greenhouse.",
                    id="control.E005",
                )
            )
    return errors
