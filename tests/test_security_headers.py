"""Security headers every page carries: CSP without unsafe-inline scripts, framing refused."""

from __future__ import annotations

import pytest
from django.urls import reverse


@pytest.mark.django_db
def test_pages_carry_a_strict_content_security_policy(client) -> None:
    response = client.get(reverse("accounts:login"))
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    script_src = next(part for part in policy.split(";") if part.strip().startswith("script-src"))
    assert "'unsafe-inline'" not in script_src
    assert "'self'" in script_src
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.django_db
def test_every_response_names_its_request_for_the_audit_trail(client) -> None:
    response = client.get(reverse("accounts:login"))
    assert len(response["X-Request-ID"]) == 36


@pytest.mark.django_db
def test_forms_are_csrf_protected(cast_a) -> None:
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    response = client.post(
        reverse("accounts:login"), {"username": cast_a.supervisor.username, "password": "x"}
    )
    assert response.status_code == 403
