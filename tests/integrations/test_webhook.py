"""The signed webhook: every refusal is a JSON error, audited, and creates nothing."""

from __future__ import annotations

import json
import time

import pytest
from django.core import mail
from django.urls import reverse

from audit.models import AuditEvent
from integrations.models import Trigger
from integrations.services import callers
from integrations.testing import signed_headers
from notices.models import Notice, Source, Status

OUTAGE = {
    "template": "water-outage",
    "segments": ["Sha Tin residents"],
    "values": {
        "area": "Sha Tin",
        "area_zh": "沙田",
        "start": "23:00",
        "end": "06:00",
        "reason": "mains repairs",
        "reason_zh": "水管維修",
    },
}


@pytest.fixture(autouse=True)
def _segment(sha_tin):
    return sha_tin


def _url(caller) -> str:
    return reverse("api:trigger", kwargs={"integration": caller.integration.slug})


def _post(client, caller, payload=OUTAGE, *, key="outage-2026-11-27-001", secret=None, **kwargs):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = signed_headers(secret or caller.secret, body, idempotency_key=key, **kwargs)
    return client.post(_url(caller), data=body, content_type="application/json", **headers)


def _refusals() -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(action="integrations.trigger_refused").order_by("sequence")
    )


def _assert_refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["status"] == status
    assert error["code"] == code
    assert error["message"]
    assert Notice.objects.count() == 0
    assert Trigger.objects.count() == 0
    refusal = _refusals()[-1]
    assert refusal.data["code"] == code
    assert refusal.data["status"] == status


@pytest.mark.django_db
def test_a_signed_webhook_prepares_and_submits_the_notice_and_alerts_approvers_once(
    client, caller, django_capture_on_commit_callbacks
):
    base = int(time.time())
    with django_capture_on_commit_callbacks(execute=True):
        response = _post(client, caller, timestamp=base)
    assert response.status_code == 201, response.content
    body = response.json()
    notice = Notice.objects.get(pk=body["notice_id"])
    assert notice.status == Status.SUBMITTED
    assert notice.source == Source.INTEGRATION
    assert notice.triggered_at is not None
    assert "Sha Tin" in notice.title_en
    assert "沙田" in notice.title_zh
    assert body["status"] == "submitted"
    assert body["status_url"].endswith(
        reverse(
            "api:trigger-status",
            kwargs={"integration": caller.integration.slug, "trigger_id": body["trigger_id"]},
        )
    )
    accepted = AuditEvent.objects.get(action="integrations.trigger_accepted")
    assert accepted.data["notice_id"] == notice.pk
    assert accepted.department_id == caller.integration.department_id
    alerts = AuditEvent.objects.filter(action="notices.approvers_alerted", target_id=str(notice.pk))
    assert alerts.count() == 1
    caller.integration.refresh_from_db()
    assert caller.integration.last_used_at is not None

    # The caller retries with the same key (re-signed): the same notice, nobody alerted again.
    with django_capture_on_commit_callbacks(execute=True):
        again = _post(client, caller, timestamp=base - 1)
    assert again.status_code == 200
    assert again.json()["notice_id"] == notice.pk
    assert again.json()["repeated"] is True
    assert Notice.objects.count() == 1
    assert AuditEvent.objects.filter(action="notices.approvers_alerted").count() == 1
    assert AuditEvent.objects.filter(action="integrations.trigger_repeated").count() == 1


@pytest.mark.django_db
def test_the_status_url_answers_a_signed_get(client, caller):
    created = _post(client, caller).json()
    path = created["status_url"].split("testserver", 1)[1]
    response = client.get(path, **signed_headers(caller.secret, b""))
    assert response.status_code == 200
    assert response.json()["notice_id"] == created["notice_id"]
    assert response.json()["status"] == "submitted"
    unsigned = client.get(path)
    assert unsigned.status_code == 401
    assert unsigned.json()["error"]["code"] == "signature_missing"


@pytest.mark.django_db
def test_an_unsigned_request_is_refused(client, caller):
    body = json.dumps(OUTAGE).encode()
    response = client.post(
        _url(caller), data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k" * 10
    )
    _assert_refused(response, 401, "signature_missing")


@pytest.mark.django_db
def test_a_wrongly_signed_request_is_refused(client, caller):
    _assert_refused(_post(client, caller, secret="whsec_not-the-secret"), 401, "signature_invalid")


@pytest.mark.django_db
def test_a_signature_over_another_body_is_refused(client, caller):
    body = json.dumps(OUTAGE).encode()
    headers = signed_headers(caller.secret, body + b" ", idempotency_key="tampered-0001")
    response = client.post(_url(caller), data=body, content_type="application/json", **headers)
    _assert_refused(response, 401, "signature_invalid")


@pytest.mark.django_db
@pytest.mark.parametrize("skew", [-301, 301, -3600])
def test_a_request_outside_the_five_minute_window_is_refused(client, caller, skew):
    response = _post(client, caller, timestamp=int(time.time()) + skew)
    _assert_refused(response, 401, "timestamp_expired")


@pytest.mark.django_db
def test_a_replayed_request_is_refused(client, caller, django_capture_on_commit_callbacks):
    body = json.dumps(OUTAGE).encode()
    headers = signed_headers(caller.secret, body, idempotency_key="replay-0001")
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(_url(caller), data=body, content_type="application/json", **headers)
    assert first.status_code == 201
    with django_capture_on_commit_callbacks(execute=True):
        replay = client.post(_url(caller), data=body, content_type="application/json", **headers)
    assert replay.status_code == 409
    assert replay.json()["error"]["code"] == "replayed"
    assert Notice.objects.count() == 1
    assert AuditEvent.objects.filter(action="notices.approvers_alerted").count() == 1
    assert _refusals()[-1].data["code"] == "replayed"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b"[1, 2]",
        json.dumps({"values": {}}).encode(),
        json.dumps({"template": "water-outage", "values": {"Area": "x"}}).encode(),
        json.dumps({"template": "water-outage", "values": {"area": 3}}).encode(),
    ],
)
def test_a_malformed_body_is_refused(client, caller, payload):
    _assert_refused(_post(client, caller, payload), 400, "malformed")


@pytest.mark.django_db
def test_an_over_size_body_is_refused_before_it_is_read(client, caller, settings):
    settings.INTEGRATIONS_WEBHOOK_MAX_BYTES = 1024
    payload = {**OUTAGE, "values": {**OUTAGE["values"], "reason": "x" * 2000}}
    _assert_refused(_post(client, caller, payload), 413, "too_large")


@pytest.mark.django_db
def test_a_missing_idempotency_key_is_refused(client, caller):
    _assert_refused(_post(client, caller, key=None), 400, "idempotency_key_missing")


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_refused(client, caller):
    assert _post(client, caller).status_code == 201
    other = {**OUTAGE, "values": {**OUTAGE["values"], "area": "Tai Po"}}
    response = _post(client, caller, other)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_conflict"
    assert Notice.objects.count() == 1


@pytest.mark.django_db
def test_an_unknown_or_unpermitted_template_is_refused(client, caller):
    _assert_refused(
        _post(client, caller, {"template": "nope", "values": {}}), 422, "unknown_template"
    )
    # Seeded for the department, but not one this integration may use.
    response = _post(
        client,
        caller,
        {"template": "rainstorm-amber", "values": {"issue_time": "1"}},
        key="amber-0001",
    )
    _assert_refused(response, 422, "unknown_template")


@pytest.mark.django_db
def test_missing_values_are_refused_and_named(client, caller):
    payload = {"template": "water-outage", "values": {"area": "Sha Tin"}}
    response = _post(client, caller, payload)
    _assert_refused(response, 422, "missing_values")
    assert "area_zh" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_a_disabled_integration_is_refused(client, caller, cast_a):
    callers.integration_update(
        actor=cast_a.system_admin, integration=caller.integration, active=False
    )
    _assert_refused(_post(client, caller), 403, "integration_disabled")


@pytest.mark.django_db
def test_an_unknown_integration_is_refused(client, caller):
    body = json.dumps(OUTAGE).encode()
    response = client.post(
        reverse("api:trigger", kwargs={"integration": "no-such-caller"}),
        data=body,
        content_type="application/json",
        **signed_headers(caller.secret, body, idempotency_key="unknown-0001"),
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_integration"
    assert Trigger.objects.count() == 0
    # Counted, not audited one by one: test_hostile_requests covers the window's summary.
    assert _refusals() == []


@pytest.mark.django_db
def test_the_wrong_method_is_a_json_error(client, caller):
    response = client.get(_url(caller))
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.django_db
def test_a_burst_is_rate_limited_recorded_and_alerts_nobody_twice(
    client, caller, cast_a, django_capture_on_commit_callbacks
):
    callers.integration_update(
        actor=cast_a.system_admin, integration=caller.integration, rate_limit_per_minute=3
    )
    statuses = []
    base = int(time.time())
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(8):
            # Re-signed each time (another timestamp), as a retrying caller does.
            stamp = base - n
            statuses.append(
                _post(client, caller, key="burst-key-0001", timestamp=stamp).status_code
            )
    # Same key: one notice, two repeats, then refusals (the minute may roll over once at most).
    assert statuses[0] == 201
    assert statuses.count(429) >= 2
    limited = [s for s in statuses if s == 429]
    assert len(limited) + statuses.count(200) + 1 == 8
    assert Notice.objects.count() == 1
    assert AuditEvent.objects.filter(action="notices.approvers_alerted").count() == 1
    rate_refusals = [e for e in _refusals() if e.data["code"] == "rate_limited"]
    # Recorded once per minute window in the trail; every refusal is counted on the window row.
    assert 1 <= len(rate_refusals) <= 2
    response = _post(client, caller, key="burst-key-0002")
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1


@pytest.mark.django_db
def test_junk_from_someone_who_knows_the_address_does_not_use_up_the_callers_minute(
    client, caller, cast_a, django_capture_on_commit_callbacks
):
    from integrations.models import RateWindow

    callers.integration_update(
        actor=cast_a.system_admin, integration=caller.integration, rate_limit_per_minute=3
    )
    for n in range(10):
        response = _post(client, caller, key=f"junk-key-{n:04d}", secret="whsec_guess")
        _assert_refused(response, 401, "signature_invalid")
    # Audited up to the limit a minute (the minute may roll over once), counted in full.
    assert 3 <= len([e for e in _refusals() if e.data["code"] == "signature_invalid"]) <= 6
    assert sum(RateWindow.objects.values_list("unsigned", flat=True)) == 10
    with django_capture_on_commit_callbacks(execute=True):
        assert _post(client, caller).status_code == 201
    assert Notice.objects.count() == 1


@pytest.mark.django_db
def test_a_rotated_secret_replaces_the_old_one_after_the_grace_period(
    client, caller, cast_a, settings
):
    settings.INTEGRATIONS_ROTATION_GRACE_SECONDS = 0
    new_secret = callers.integration_rotate_secret(
        actor=cast_a.system_admin, integration=caller.integration
    )
    assert new_secret != caller.secret
    _assert_refused(_post(client, caller), 401, "signature_invalid")
    assert _post(client, caller, secret=new_secret).status_code == 201


@pytest.mark.django_db
def test_the_old_secret_verifies_during_the_grace_period(client, caller, cast_a):
    callers.integration_rotate_secret(actor=cast_a.system_admin, integration=caller.integration)
    assert _post(client, caller).status_code == 201


@pytest.mark.django_db
def test_nothing_is_sent_without_approval(client, caller, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        notice_id = _post(client, caller).json()["notice_id"]
    notice = Notice.objects.get(pk=notice_id)
    assert notice.status == Status.SUBMITTED
    assert notice.approved_at is None
    assert not notice.approvals.exists()
    assert len(mail.outbox) <= 1


@pytest.mark.django_db
def test_an_unknown_segment_is_refused(client, caller):
    payload = {**OUTAGE, "segments": ["Nobody at all"]}
    _assert_refused(_post(client, caller, payload), 422, "unknown_segment")


@pytest.mark.django_db
def test_old_signatures_and_windows_are_purged_and_the_purge_runs_twice_safely(client, caller):
    import datetime as dt

    from django.utils import timezone

    from integrations.models import RateWindow, SeenSignature
    from integrations.tasks import purge_nonces_task

    assert _post(client, caller).status_code == 201
    assert SeenSignature.objects.count() == 1
    assert RateWindow.objects.count() == 1
    assert purge_nonces_task.delay().get() == 0  # still inside the window: kept
    old = timezone.now() - dt.timedelta(minutes=11)
    SeenSignature.objects.update(seen_at=old)
    RateWindow.objects.update(window_start=old)
    assert purge_nonces_task.delay().get() == 1
    assert purge_nonces_task.delay().get() == 0
    assert not SeenSignature.objects.exists()
    assert not RateWindow.objects.exists()


@pytest.mark.django_db
def test_the_approval_inbox_shows_how_long_a_triggered_notice_has_waited(client, caller, cast_a):
    from common.testing.cast import verified_client_for

    assert _post(client, caller).status_code == 201
    inbox = verified_client_for(cast_a.supervisor).get(reverse("notices:inbox"))
    assert inbox.status_code == 200
    assert b"integrations-wait" in inbox.content
    assert b"s target" in inbox.content
