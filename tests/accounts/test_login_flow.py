"""Password then TOTP, enrolment with hashed backup codes, throttling and session lifetimes."""

from __future__ import annotations

import time

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import BackupCode
from audit.actions import AuditAction
from audit.models import AuditEvent
from common.testing.cast import TEST_PASSWORD, give_authenticator, verified_client_for


def current_code(device: TOTPDevice, at: float | None = None) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = at if at is not None else time.time()
    return f"{totp.token():06d}"


def login_password(client: Client, username: str, password: str = TEST_PASSWORD):
    return client.post(reverse("accounts:login"), {"username": username, "password": password})


@pytest.mark.django_db
def test_password_then_totp_opens_the_portal(cast_a) -> None:
    device = give_authenticator(cast_a.supervisor)
    client = Client()
    response = login_password(client, cast_a.supervisor.username)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:verify"))
    assert client.get(reverse("accounts:home")).status_code == 302  # not yet verified
    response = client.post(reverse("accounts:verify"), {"token": current_code(device)})
    assert response.status_code == 302
    home = client.get(reverse("accounts:home"))
    assert home.status_code == 200
    assert b"Water Supplies Department" in home.content
    actions = list(
        AuditEvent.objects.filter(actor=cast_a.supervisor).values_list("action", flat=True)
    )
    assert AuditAction.LOGGED_IN in actions
    assert AuditAction.OTP_VERIFIED in actions


@pytest.mark.django_db
def test_a_wrong_password_is_refused_and_audited(cast_a) -> None:
    response = login_password(Client(), cast_a.supervisor.username, "wrong password")
    assert response.status_code == 200
    assert b"do not match" in response.content
    event = AuditEvent.objects.get(action=AuditAction.LOGIN_FAILED)
    assert event.actor is None
    assert event.data["username"] == cast_a.supervisor.username


@pytest.mark.django_db
def test_repeated_wrong_passwords_lock_the_username_and_ip(cast_a, settings) -> None:
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login_password(client, cast_a.supervisor.username, "nope").status_code == 200
    locked = login_password(client, cast_a.supervisor.username, "nope")
    assert locked.status_code == 429
    assert b"Account temporarily locked" in locked.content
    # Even the right password is refused while locked.
    assert login_password(client, cast_a.supervisor.username).status_code == 429
    event = AuditEvent.objects.filter(action=AuditAction.LOCKED_OUT).first()
    assert event is not None
    assert event.data["username"] == cast_a.supervisor.username
    # The lock is per username+IP: a colleague on the same office network still gets in.
    other = login_password(Client(), cast_a.pr_officer.username)
    assert other.status_code == 302


@pytest.mark.django_db
def test_wrong_totp_codes_are_throttled(cast_a) -> None:
    device = give_authenticator(cast_a.supervisor)
    client = Client()
    login_password(client, cast_a.supervisor.username)
    first = client.post(reverse("accounts:verify"), {"token": "000000"})
    assert b"not valid" in first.content or b"Wait" in first.content
    second = client.post(reverse("accounts:verify"), {"token": "000001"})
    assert b"Too many wrong codes" in second.content
    # While throttled even the right code is refused, so guessing cannot race the delay.
    third = client.post(reverse("accounts:verify"), {"token": current_code(device)})
    assert third.status_code == 200
    assert AuditEvent.objects.filter(action=AuditAction.OTP_FAILED).count() >= 1


@pytest.mark.django_db
def test_first_login_forces_enrolment_with_a_qr_code_and_hashed_backup_codes(cast_a) -> None:
    client = Client()
    response = login_password(client, cast_a.pr_officer.username)
    assert response["Location"].startswith(reverse("accounts:enrol"))
    page = client.get(reverse("accounts:enrol"))
    assert b"data:image/svg+xml" in page.content
    device = TOTPDevice.objects.get(user=cast_a.pr_officer, confirmed=False)
    wrong = client.post(
        reverse("accounts:enrol"),
        {"token": "123456" if current_code(device) != "123456" else "654321"},
    )
    assert b"does not match" in wrong.content
    # The wrong code set django-otp's throttle (1 s); a person simply tries again a moment later.
    with time_machine.travel(time.time() + 5, tick=False):
        done = client.post(
            reverse("accounts:enrol"), {"token": current_code(device, at=time.time())}
        )
    assert done.status_code == 200
    codes = done.context["codes"]
    assert len(codes) == 10
    stored = list(
        BackupCode.objects.filter(device__user=cast_a.pr_officer).values_list(
            "code_hash", flat=True
        )
    )
    assert len(stored) == 10
    assert not set(codes) & set(stored)  # only hashes are kept
    assert client.get(reverse("accounts:home")).status_code == 200
    assert AuditEvent.objects.filter(
        action=AuditAction.TOTP_ENROLLED, actor=cast_a.pr_officer
    ).exists()

    # A backup code works once.
    second = Client()
    login_password(second, cast_a.pr_officer.username)
    ok = second.post(reverse("accounts:verify"), {"token": codes[0], "backup": "on"})
    assert ok.status_code == 302
    third = Client()
    login_password(third, cast_a.pr_officer.username)
    reused = third.post(reverse("accounts:verify"), {"token": codes[0], "backup": "on"})
    assert reused.status_code == 200


@pytest.mark.django_db
def test_enrolment_cannot_replace_an_existing_authenticator(cast_a) -> None:
    give_authenticator(cast_a.supervisor)
    client = Client()
    login_password(client, cast_a.supervisor.username)
    response = client.get(reverse("accounts:enrol"))
    assert response.status_code == 302
    assert response["Location"] == reverse("accounts:verify")


@pytest.mark.django_db
def test_sessions_end_after_the_absolute_lifetime(cast_a, settings) -> None:
    client = verified_client_for(cast_a.supervisor)
    assert client.get(reverse("accounts:home")).status_code == 200
    with time_machine.travel(time.time() + settings.SESSION_ABSOLUTE_SECONDS + 60, tick=False):
        response = client.get(reverse("accounts:home"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


@pytest.mark.django_db
def test_activity_keeps_a_session_and_idling_ends_it_with_one_write_a_minute(
    cast_a, settings
) -> None:
    assert settings.SESSION_COOKIE_AGE <= 30 * 60
    client = verified_client_for(cast_a.supervisor)
    home = reverse("accounts:home")
    start = time.time()
    # Used every 20 minutes for an hour: never idle for the session's age, never logged out.
    for minutes in (20, 40, 60):
        with time_machine.travel(start + minutes * 60, tick=False):
            assert client.get(home).status_code == 200
    # A dashboard polling every 2 s writes the session at most once a minute.
    with CaptureQueriesContext(connection) as queries:
        for second in range(2, 122, 2):
            with time_machine.travel(start + 3600 + second, tick=False):
                assert client.get(home).status_code == 200
    writes = [q for q in queries.captured_queries if q["sql"].startswith('UPDATE "django_session"')]
    assert 1 <= len(writes) <= 3
    # Then idle for longer than the session's age: logged out.
    with time_machine.travel(start + 3600 + 122 + settings.SESSION_COOKIE_AGE + 1, tick=False):
        response = client.get(home)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


@pytest.mark.django_db
def test_logout_is_audited(cast_a) -> None:
    client = verified_client_for(cast_a.supervisor)
    response = client.post(reverse("accounts:logout"))
    assert response.status_code == 302
    assert AuditEvent.objects.filter(
        action=AuditAction.LOGGED_OUT, actor=cast_a.supervisor
    ).exists()
    assert client.get(reverse("accounts:home")).status_code == 302


@pytest.mark.django_db
def test_next_parameter_cannot_redirect_off_site(cast_a) -> None:
    device = give_authenticator(cast_a.supervisor)
    client = Client()
    login_password(client, cast_a.supervisor.username)
    response = client.post(
        reverse("accounts:verify") + "?next=https://evil.example/", {"token": current_code(device)}
    )
    assert response["Location"] == reverse("accounts:home")


@pytest.mark.django_db
def test_failed_logins_of_a_departments_username_reach_its_auditors_only(cast_a, cast_b) -> None:
    from common.testing.cast import verified_client_for

    login_password(Client(), cast_a.supervisor.username, "wrong password")
    login_password(Client(), "nobody-at-all", "wrong password")
    event = AuditEvent.objects.get(
        action=AuditAction.LOGIN_FAILED, data__username=cast_a.supervisor.username
    )
    assert event.department_id == cast_a.department.pk
    unknown = AuditEvent.objects.get(
        action=AuditAction.LOGIN_FAILED, data__username="nobody-at-all"
    )
    assert unknown.department_id is None
    wsd_trail = verified_client_for(cast_a.auditor).get(
        reverse("audit:event-list"), {"action": AuditAction.LOGIN_FAILED}
    )
    assert reverse("audit:event-detail", args=[event.pk]) in wsd_trail.content.decode()
    fehd_trail = verified_client_for(cast_b.auditor).get(
        reverse("audit:event-list"), {"action": AuditAction.LOGIN_FAILED}
    )
    assert reverse("audit:event-detail", args=[event.pk]) not in fehd_trail.content.decode()
