"""seed_demo and demo_totp: idempotent seeding and a usable second factor in demos."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from accounts.demo import DEMO_PASSWORD
from accounts.models import Department, Membership, Role
from audiences.models import District


@pytest.fixture
def demo_mode(settings, tmp_path):
    settings.PORTAL_DEMO_MODE = True
    settings.DINGTALK_SECRETS_DIR = tmp_path / "secrets"
    return settings


@pytest.mark.django_db
def test_seed_demo_is_idempotent_and_covers_every_role_in_two_departments(demo_mode) -> None:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    call_command("seed_demo", stdout=StringIO())
    assert set(Department.objects.values_list("code", flat=True)) == {
        "HKO",
        "FEHD",
        "WSD",
        "CHP",
        "FSD",
        "DSD",
        "TD",
        "HAD",
    }
    for code in ("HKO", "WSD"):
        roles = set(Membership.objects.filter(department__code=code).values_list("role", flat=True))
        assert roles == set(Role.values)
    assert User.objects.filter(username="wsd.supervisor").count() == 1
    assert "demo_totp" in out.getvalue()
    assert DEMO_PASSWORD in out.getvalue()
    assert District.objects.count() == 18
    from audiences.models import Recipient
    from integrations.models import WarningMapping
    from notices.models import NoticeTemplate

    # Recipients are members of the simulator's directory; templates and warning mappings ready.
    wsd_recipients = Recipient.objects.filter(department__code="WSD")
    assert wsd_recipients.count() > 200
    assert all(r.dingtalk_user_id.startswith("wsd") for r in wsd_recipients[:20])
    assert NoticeTemplate.objects.filter(department__code="HKO").exists()
    assert WarningMapping.objects.filter(department__code="HKO").exists()
    assert District.objects.get(code="SS").name_zh == "深水埗區"
    secret_file = demo_mode.DINGTALK_SECRETS_DIR / "dingtalk-wsd.secret"
    assert Department.objects.get(code="WSD").dingtalk_secret_ref == f"file:{secret_file}"
    assert secret_file.stat().st_mode & 0o077 == 0


@pytest.mark.django_db
def test_a_demo_user_logs_in_with_the_printed_totp_code(demo_mode) -> None:
    call_command("seed_demo", stdout=StringIO())
    out = StringIO()
    call_command("demo_totp", "wsd.supervisor", stdout=out)
    code = out.getvalue().split()[0]
    client = Client()
    client.post(
        reverse("accounts:login"), {"username": "wsd.supervisor", "password": DEMO_PASSWORD}
    )
    response = client.post(reverse("accounts:verify"), {"token": code})
    assert response.status_code == 302
    assert client.get(reverse("accounts:home")).status_code == 200


@pytest.mark.django_db
def test_demo_commands_refuse_outside_demo_mode(settings) -> None:
    settings.PORTAL_DEMO_MODE = False
    with pytest.raises(CommandError, match="PORTAL_DEMO_MODE"):
        call_command("seed_demo", stdout=StringIO())
    with pytest.raises(CommandError, match="PORTAL_DEMO_MODE"):
        call_command("demo_totp", "wsd.supervisor", stdout=StringIO())
