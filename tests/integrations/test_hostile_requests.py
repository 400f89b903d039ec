"""Hostile machine requests (issue 16): Cancels across integrations, deep JSON, unknown
addresses, over-size bodies and the wrong media type."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine
from django.urls import reverse

from audit.models import AuditEvent
from integrations.models import CancellationRequest, Trigger, UnknownTrafficWindow
from integrations.services import callers, signing
from integrations.testing import CapInfoSpec, cap_alert_xml, cap_template, signed_headers
from notices.models import Notice, Status

ENGLISH = CapInfoSpec(
    language="en-HK",
    event="Landslip",
    headline="Landslip warning",
    description="Slopes are unstable.",
    instruction="Keep away from slopes.",
    areas=("Sha Tin",),
)
CHINESE = CapInfoSpec(
    language="zh-HK",
    event="山泥傾瀉",
    headline="山泥傾瀉警告",
    description="斜坡不穩。",
    instruction="請遠離斜坡。",
    areas=("沙田區",),
)
OUTAGE = {
    "template": "water-outage",
    "values": {"area": "Sha Tin", "area_zh": "沙田", "start": "23:00", "end": "06:00"},
}
NOON = dt.datetime(2026, 11, 27, 4, 0, 10, tzinfo=dt.UTC)


def _refusals() -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(action="integrations.trigger_refused").order_by("sequence")
    )


def _cap_caller(cast, caller_or_name, templates=None):
    integration, secret = callers.integration_create(
        actor=cast.system_admin,
        department=cast.department,
        name=caller_or_name,
        templates=templates or [],
        rate_limit_per_minute=30,
    )
    callers.integration_update(
        actor=cast.system_admin, integration=integration, cap_template=cap_template(cast.department)
    )
    integration.refresh_from_db()
    return integration, secret


def _post_cap(client, integration, secret, body: bytes):
    return client.post(
        reverse("api:cap", kwargs={"integration": integration.slug}),
        data=body,
        content_type="application/cap+xml",
        **signed_headers(secret, body),
    )


def _cancel(identifier: str, references: str) -> bytes:
    return cap_alert_xml(
        identifier=identifier, msg_type="Cancel", references=references, infos=(ENGLISH, CHINESE)
    )


@pytest.mark.django_db
def test_a_cancel_from_another_integration_of_the_department_cancels_nothing(
    client, cast_a, templates_a, django_capture_on_commit_callbacks
):
    first, first_secret = _cap_caller(cast_a, "Geotechnical office")
    second, second_secret = _cap_caller(cast_a, "Second feed")
    with django_capture_on_commit_callbacks(execute=True):
        made = _post_cap(
            client, first, first_secret, cap_alert_xml(identifier="LS-1", infos=(ENGLISH, CHINESE))
        )
    notice_id = made.json()["notice_id"]
    reference = "alerts@example.gov.hk,LS-1,2026-11-27T10:00:00+08:00"
    response = _post_cap(client, second, second_secret, _cancel("LS-1-C", reference))
    assert response.status_code == 422, response.content
    assert response.json()["error"]["code"] == "unknown_reference"
    assert Notice.objects.get(pk=notice_id).status == Status.SUBMITTED
    assert not CancellationRequest.objects.exists()
    refusal = _refusals()[-1]
    assert refusal.data["code"] == "unknown_reference"
    assert refusal.target_id == str(second.pk)
    # The integration that prepared it may cancel it.
    with django_capture_on_commit_callbacks(execute=True):
        own = _post_cap(client, first, first_secret, _cancel("LS-1-C2", reference))
    assert own.status_code == 201, own.content
    assert Notice.objects.get(pk=notice_id).status == Status.CANCELLED


@pytest.mark.django_db
def test_a_cancel_touches_only_the_referenced_alerts(
    client, cast_a, templates_a, django_capture_on_commit_callbacks
):
    feed, secret = _cap_caller(cast_a, "Geotechnical office")
    with django_capture_on_commit_callbacks(execute=True):
        one = _post_cap(
            client, feed, secret, cap_alert_xml(identifier="A-1", infos=(ENGLISH, CHINESE))
        )
        two = _post_cap(
            client, feed, secret, cap_alert_xml(identifier="A-2", infos=(ENGLISH, CHINESE))
        )
    response = _post_cap(
        client,
        feed,
        secret,
        _cancel("A-1-C", "alerts@example.gov.hk,A-1,2026-11-27T10:00:00+08:00"),
    )
    assert response.status_code == 201
    assert Notice.objects.get(pk=one.json()["notice_id"]).status == Status.CANCELLED
    assert Notice.objects.get(pk=two.json()["notice_id"]).status == Status.SUBMITTED


@pytest.mark.django_db
def test_an_update_from_another_integration_leaves_the_first_notice_alone(
    client, cast_a, templates_a, django_capture_on_commit_callbacks
):
    first, first_secret = _cap_caller(cast_a, "Geotechnical office")
    second, second_secret = _cap_caller(cast_a, "Second feed")
    with django_capture_on_commit_callbacks(execute=True):
        made = _post_cap(
            client, first, first_secret, cap_alert_xml(identifier="U-1", infos=(ENGLISH, CHINESE))
        )
        update = cap_alert_xml(
            identifier="U-1-U",
            msg_type="Update",
            references="alerts@example.gov.hk,U-1,2026-11-27T10:00:00+08:00",
            infos=(ENGLISH, CHINESE),
        )
        response = _post_cap(client, second, second_secret, update)
    assert response.status_code == 201
    assert Notice.objects.get(pk=made.json()["notice_id"]).status == Status.SUBMITTED
    assert not CancellationRequest.objects.exists()


def _post_webhook(
    client, caller, body: bytes, *, content_type="application/json", key="hostile-0001"
):
    return client.post(
        reverse("api:trigger", kwargs={"integration": caller.integration.slug}),
        data=body,
        content_type=content_type,
        **signed_headers(caller.secret, body, idempotency_key=key),
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [b"[" * 8000 + b"]" * 8000, b'{"template": ' + b'{"":' * 3000 + b"1" + b"}" * 3001, b"{\x00"],
    ids=["deep-list", "deep-object", "malformed"],
)
def test_deep_or_malformed_json_is_a_structured_400_and_audited(client, caller, body):
    response = _post_webhook(client, caller, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "malformed"
    assert Trigger.objects.count() == 0
    refusal = _refusals()[-1]
    assert (refusal.data["status"], refusal.data["code"]) == (400, "malformed")
    assert refusal.department_id == caller.integration.department_id


@pytest.mark.django_db
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_signed_webhook_must_be_application_json(client, caller, content_type):
    response = _post_webhook(client, caller, json.dumps(OUTAGE).encode(), content_type=content_type)
    assert response.status_code == 415, response.content
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert Notice.objects.count() == 0
    refusal = _refusals()[-1]
    assert refusal.data["code"] == "unsupported_media_type"
    assert refusal.target_id == str(caller.integration.pk)


@pytest.mark.django_db
def test_a_413_for_a_known_integration_is_its_own(client, caller, settings):
    settings.INTEGRATIONS_WEBHOOK_MAX_BYTES = 64
    with time_machine.travel(NOON, tick=False):  # one minute: its counter is not reset midway
        response = _post_webhook(client, caller, json.dumps(OUTAGE).encode())
        assert response.status_code == 413
        refusal = _refusals()[-1]
        assert refusal.data["code"] == "too_large"
        assert refusal.target_id == str(caller.integration.pk)
        assert refusal.department_id == caller.integration.department_id
        # Unauthenticated, so audited at most the integration's limit a minute.
        for _ in range(40):
            _post_webhook(client, caller, json.dumps(OUTAGE).encode())
    assert len(_refusals()) == caller.integration.rate_limit_per_minute


def _unknown(client, source: str, slug: str = "no-such-caller"):
    return client.post(
        reverse("api:trigger", kwargs={"integration": slug}),
        data=b"{}",
        content_type="application/json",
        REMOTE_ADDR=source,
    )


@pytest.mark.django_db
def test_unknown_addresses_are_counted_and_audited_once_per_window(client, settings):
    settings.INTEGRATIONS_UNKNOWN_WINDOW_SECONDS = 60
    with time_machine.travel(NOON, tick=False):
        for i in range(200):
            response = _unknown(client, "203.0.113.7" if i % 4 else "198.51.100.9", f"x{i}")
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "unknown_integration"
    assert not AuditEvent.objects.filter(action__startswith="integrations.").exists()
    assert sorted(UnknownTrafficWindow.objects.values_list("source", "count")) == [
        ("198.51.100.9", 50),
        ("203.0.113.7", 150),
    ]
    with time_machine.travel(NOON + dt.timedelta(seconds=60), tick=False):
        _unknown(client, "203.0.113.7")
        _unknown(client, "203.0.113.7")
    [summary] = AuditEvent.objects.filter(action="integrations.unknown_traffic")
    assert summary.data["requests"] == 200
    assert summary.data["sources"] == 2
    assert summary.data["busiest"] == [["203.0.113.7", 150], ["198.51.100.9", 50]]
    assert summary.department_id is None
    assert not _refusals()
    # The window that has just ended is summarised by the purge task if no request comes.
    with time_machine.travel(NOON + dt.timedelta(seconds=200), tick=False):
        signing.seen_signatures_purge()
    assert AuditEvent.objects.filter(action="integrations.unknown_traffic").count() == 2
    assert not UnknownTrafficWindow.objects.exists()


@pytest.mark.django_db
def test_many_sources_in_a_window_share_one_counter_beyond_the_cap(client, settings):
    settings.INTEGRATIONS_UNKNOWN_MAX_SOURCES = 5
    with time_machine.travel(NOON, tick=False):
        for i in range(30):
            _unknown(client, f"192.0.2.{i}")
    assert UnknownTrafficWindow.objects.count() == 6
    assert UnknownTrafficWindow.objects.get(source="other").count == 25
    assert not AuditEvent.objects.filter(action__startswith="integrations.").exists()


@pytest.mark.django_db
def test_deeply_nested_cap_xml_is_a_structured_400_and_audited(client, cast_a, templates_a):
    feed, secret = _cap_caller(cast_a, "Geotechnical office")
    body = (
        b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">'
        + b"<a>" * 20000
        + b"</a>" * 20000
        + b"</alert>"
    )
    response = _post_cap(client, feed, secret, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["status"] == 400
    assert Notice.objects.count() == 0
    assert _refusals()[-1].data["status"] == 400


@pytest.mark.django_db
def test_requests_to_a_disabled_integration_are_audited_at_most_its_limit_a_minute(
    client, caller, cast_a
):
    callers.integration_update(
        actor=cast_a.system_admin, integration=caller.integration, active=False
    )
    with time_machine.travel(NOON, tick=False):
        for _ in range(45):
            response = _post_webhook(client, caller, json.dumps(OUTAGE).encode())
            assert response.status_code == 403
    refused = _refusals()
    assert len(refused) == caller.integration.rate_limit_per_minute
    assert {r.data["code"] for r in refused} == {"integration_disabled"}
    assert {r.department_id for r in refused} == {caller.integration.department_id}
