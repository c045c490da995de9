"""Login throttling (django-axes): a few wrong passwords lock that user name from that address for a while."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

pytestmark = [pytest.mark.django_db, pytest.mark.login_throttling]

PASSWORD = "the right long passphrase 7"


@pytest.fixture
def grower():
    return get_user_model().objects.create_user("grower", password=PASSWORD)


def log_in(client: Client, password: str, address: str = "192.0.2.10"):
    return client.post("/accounts/login/", {"username": "grower", "password": password}, REMOTE_ADDR=address)


def test_five_wrong_passwords_lock_the_user_from_that_address_even_with_the_right_one(grower, settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    client = Client()
    for _ in range(4):
        assert log_in(client, "guess").status_code == 200  # the form again, "wrong password"
    locked = log_in(client, "guess")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert log_in(client, PASSWORD).status_code == 429  # the right password does not get through now
    assert log_in(Client(), PASSWORD, address="192.0.2.99").status_code == 302  # from elsewhere it does


def test_axes_reset_unlocks_at_once(grower):
    client = Client()
    for _ in range(5):
        log_in(client, "guess")
    assert log_in(client, PASSWORD).status_code == 429
    call_command("axes_reset", stdout=None)
    assert log_in(client, PASSWORD).status_code == 302
