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


@pytest.mark.django_db
def test_seed_demo_gives_every_department_useful_segments_that_reach_people(demo_mode) -> None:
    from audiences.models import Segment
    from audiences.selectors import segment_count

    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())
    for department in Department.objects.all():
        names = set(Segment.objects.filter(department=department).values_list("name", flat=True))
        assert {
            "Everyone subscribed 所有訂閱者",
            "High risk 高風險人士",
            "Frontline staff 前線人員",
        } <= names
        by_district = Segment.objects.filter(department=department, districts__isnull=False)
        assert by_district.distinct().count() == 3, department.code
    wsd = Department.objects.get(code="WSD")
    # In a department with recipients, each segment reaches some of them and not all.
    everyone = segment_count(
        Segment.objects.get(department=wsd, name="Everyone subscribed 所有訂閱者")
    )
    for name in ("High risk 高風險人士", "Frontline staff 前線人員"):
        assert 0 < segment_count(Segment.objects.get(department=wsd, name=name)) < everyone
    for segment in Segment.objects.filter(department=wsd, districts__isnull=False).distinct():
        assert 0 < segment_count(segment) < everyone


@pytest.mark.django_db
def test_the_home_page_says_who_manages_recipients_and_links_there(cast_a) -> None:
    from common.testing.cast import verified_client_for

    page = verified_client_for(cast_a.pr_officer).get(reverse("accounts:home")).content.decode()
    assert 'id="who-manages-audiences"' in page
    assert "administrator manages its recipients" in page
    assert reverse("audiences:home", args=[cast_a.department.code]) in page
