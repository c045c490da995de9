"""Content-Security-Policy without 'unsafe-inline' and a Permissions-Policy: sent, and the pages still work."""

from __future__ import annotations

import pytest
from django.db import connections

from tests.test_browser import ARTIFACTS, browser, chart_points, seeded  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


def test_every_page_sends_the_policies(admin_client):
    for url in ("/", "/accounts/login/", "/control/", "/admin/"):
        response = admin_client.get(url)
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert "camera=()" in response["Permissions-Policy"] and "geolocation=()" in response["Permissions-Policy"]


@pytest.mark.django_db(transaction=True)
def test_the_pages_work_under_the_policy_in_chromium(browser, live_server, seeded):  # noqa: F811
    violations: list[str] = []
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on(
            "console",
            lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None,
        )
        page.goto(live_server.url + "/")
        page.fill("#id_username", "grower")
        page.fill("#id_password", "greenhouse")
        page.click("input[type=submit]")
        page.wait_for_selector("text=North bench")
        page.click("text=Tomatoes")
        assert chart_points(page, "air_temperature") > 0  # the charts' scripts ran and drew
        page.goto(live_server.url + "/control/")
        page.goto(live_server.url + f"/locations/{seeded.location.pk}/")
        page.wait_for_selector('#charts[data-ready="1"]')
        page.screenshot(path=str(ARTIFACTS / "location-under-csp.png"), full_page=True)
        assert violations == []
    finally:
        connections.close_all()
