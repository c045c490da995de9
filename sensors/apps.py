from django.apps import AppConfig


class SensorsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "sensors"
    verbose_name = "Sensors"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
