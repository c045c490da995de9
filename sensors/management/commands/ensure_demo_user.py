"""python manage.py ensure_demo_user: a login for the `make run` demo, only on a database with no users.

Also makes sure the "Growers" group exists (docs/security.md): what a grower needs day to day,
name, place and calibrate sensors and switch an output by hand, without being a superuser.
It warns on every run while the demo user still has the demo password.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand

DEMO_USERNAME = "grower"
DEMO_PASSWORD = "greenhouse"
GROWERS = "Growers"
# app_label.codename: view everything, change sensors and locations (name, place, calibrate), override outputs.
GROWER_PERMISSIONS = [
    "sensors.view_sensor",
    "sensors.change_sensor",
    "sensors.view_location",
    "sensors.add_location",
    "sensors.change_location",
    "sensors.view_reading",
    "control.view_output",
    "control.view_rule",
    "control.view_event",
    "control.override_output",
]


def ensure_growers_group() -> Group:
    group, _ = Group.objects.get_or_create(name=GROWERS)
    for name in GROWER_PERMISSIONS:
        app_label, codename = name.split(".")
        group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return group


def demo_password_in_use() -> bool:
    """Does the demo user still log in with the demo password?"""
    user = get_user_model().objects.filter(username=DEMO_USERNAME, is_active=True).first()
    return user is not None and user.check_password(DEMO_PASSWORD)


class Command(BaseCommand):
    help = "Create the demo superuser grower/greenhouse if the database has no users yet (and the Growers group)."

    def handle(self, *args, **options) -> None:
        ensure_growers_group()
        User = get_user_model()
        if User.objects.exists():
            self.stdout.write("Users exist already; no demo user created.")
        else:
            user = User.objects.create_superuser(DEMO_USERNAME, "", DEMO_PASSWORD)
            user.groups.add(ensure_growers_group())
            self.stdout.write(f"Created the demo user {DEMO_USERNAME} / {DEMO_PASSWORD}.")
        if demo_password_in_use():
            self.stderr.write(
                self.style.WARNING(
                    f"WARNING: the user {DEMO_USERNAME} still has the demo password {DEMO_PASSWORD!r}: change it in "
                    "the admin (or `python manage.py changepassword grower`) before other machines can reach the "
                    "web UI. `manage.py check --deploy` fails until you do."
                )
            )
