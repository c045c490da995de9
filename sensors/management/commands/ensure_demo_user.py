"""python manage.py ensure_demo_user: a login for the `make run` demo, only on a database with no users."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEMO_USERNAME = "grower"
DEMO_PASSWORD = "greenhouse"


class Command(BaseCommand):
    help = "Create the demo superuser grower/greenhouse if the database has no users yet."

    def handle(self, *args, **options) -> None:
        User = get_user_model()
        if User.objects.exists():
            self.stdout.write("Users exist already; no demo user created.")
            return
        User.objects.create_superuser(DEMO_USERNAME, "", DEMO_PASSWORD)
        self.stdout.write(
            f"Created the demo user {DEMO_USERNAME} / {DEMO_PASSWORD}: change its password in the admin "
            "before the web UI is reachable from other machines."
        )
