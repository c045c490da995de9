from django.apps import AppConfig


class ControlConfig(AppConfig):
    name = "control"
    verbose_name = "Control: outputs, rules and events"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
