"""CAP 1.2 alerts: schema-valid, bilingual, safe against hostile XML, and Cancel handling."""

from __future__ import annotations

import time

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from common.errors import ApplicationError
from integrations.models import CancellationRequest, CancellationState, Trigger
from integrations.services import callers, cancellations
from integrations.testing import CapInfoSpec, cap_alert_xml, cap_template, signed_headers
from notices.models import Notice, Status

ENGLISH = CapInfoSpec(
    language="en-HK",
    event="Landslip",
    headline="Landslip warning for Sha Tin and Tai Po",
    description="Slopes are unstable after heavy rain.",
    instruction="Keep away from slopes and retaining walls.",
    areas=("Sha Tin", "Tai Po District", "Somewhere else"),
)
CHINESE = CapInfoSpec(
    language="zh-HK",
    event="山泥傾瀉",
    headline="沙田及大埔山泥傾瀉警告",
    description="大雨後斜坡不穩。",
    instruction="請遠離斜坡及擋土牆。",
    areas=("沙田區", "大埔"),
)


@pytest.fixture
def cap_caller(caller, cast_a):
    callers.integration_update(
        actor=cast_a.system_admin,
        integration=caller.integration,
        cap_template=cap_template(cast_a.department),
    )
    caller.integration.refresh_from_db()
    return caller


def _post(client, caller, body: bytes, **kwargs):
    return client.post(
        reverse("api:cap", kwargs={"integration": caller.integration.slug}),
        data=body,
        content_type="application/cap+xml",
        **signed_headers(caller.secret, body, **kwargs),
    )


def _refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert Notice.objects.count() == 0
    assert Trigger.objects.count() == 0
    last = AuditEvent.objects.filter(action="integrations.trigger_refused").latest("sequence")
    assert last.data["code"] == code


@pytest.mark.django_db
def test_a_bilingual_alert_yields_a_bilingual_notice_with_districts(
    client, cap_caller, django_capture_on_commit_callbacks
):
    body = cap_alert_xml(identifier="HK-LS-001", infos=(ENGLISH, CHINESE))
    base = int(time.time())
    with django_capture_on_commit_callbacks(execute=True):
        response = _post(client, cap_caller, body, timestamp=base)
    assert response.status_code == 201, response.content
    notice = Notice.objects.get(pk=response.json()["notice_id"])
    assert notice.status == Status.SUBMITTED
    assert notice.title_en == ENGLISH.headline
    assert notice.title_zh == CHINESE.headline
    assert ENGLISH.description in notice.body_en
    assert ENGLISH.instruction in notice.body_en
    assert CHINESE.description in notice.body_zh
    assert "Areas: Tai Po, Sha Tin" in notice.body_en
    assert "地區: 大埔區, 沙田區" in notice.body_zh
    trigger = Trigger.objects.get()
    assert trigger.values["districts"] == "TP,ST"
    assert notice.external_ref == "cap:alerts@example.gov.hk HK-LS-001"
    assert AuditEvent.objects.filter(action="notices.approvers_alerted").count() == 1
    # The same alert delivered again (re-signed) prepares nothing new.
    with django_capture_on_commit_callbacks(execute=True):
        again = _post(client, cap_caller, body, timestamp=base - 1)
    assert again.status_code == 200
    assert again.json()["repeated"] is True
    assert Notice.objects.count() == 1
    assert AuditEvent.objects.filter(action="notices.approvers_alerted").count() == 1


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol4;</identifier></alert>"""

EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&xxe;</identifier></alert>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE alert SYSTEM "http://127.0.0.1:9/cap.dtd">
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>x</identifier></alert>"""


@pytest.mark.django_db
@pytest.mark.parametrize("body", [BOMB, EXTERNAL, EXTERNAL_DTD], ids=["bomb", "xxe", "dtd"])
def test_hostile_xml_is_refused(client, cap_caller, body):
    _refused(_post(client, cap_caller, body), 400, "xml_forbidden")


@pytest.mark.django_db
def test_malformed_xml_is_refused(client, cap_caller):
    _refused(_post(client, cap_caller, b"<alert><unclosed></alert>"), 400, "xml_malformed")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"<scope>Public</scope>", b""),  # scope is required
        (b"<status>Actual</status>", b"<status>Real</status>"),
        (b"+08:00</sent>", b"Z</sent>"),  # CAP times carry an offset, never Z
    ],
)
def test_an_alert_that_breaks_the_schema_is_refused(client, cap_caller, old, new):
    body = cap_alert_xml(identifier="HK-BAD-1", infos=(ENGLISH,))
    assert old in body
    _refused(_post(client, cap_caller, body.replace(old, new)), 422, "cap_invalid")


@pytest.mark.django_db
def test_two_infos_in_one_language_are_refused(client, cap_caller):
    body = cap_alert_xml(identifier="HK-DUP-1", infos=(ENGLISH, ENGLISH))
    _refused(_post(client, cap_caller, body), 422, "cap_duplicate_language")


@pytest.mark.django_db
def test_exercises_and_restricted_alerts_prepare_nothing(client, cap_caller):
    _refused(
        _post(
            client,
            cap_caller,
            cap_alert_xml(identifier="EX-1", status="Exercise", infos=(ENGLISH,)),
        ),
        422,
        "cap_not_actual",
    )
    _refused(
        _post(
            client,
            cap_caller,
            cap_alert_xml(identifier="RS-1", scope="Restricted", infos=(ENGLISH,)),
        ),
        422,
        "cap_not_public",
    )


@pytest.mark.django_db
def test_an_over_size_alert_is_refused(client, cap_caller, settings):
    settings.INTEGRATIONS_CAP_MAX_BYTES = 512
    _refused(
        _post(client, cap_caller, cap_alert_xml(identifier="BIG-1", infos=(ENGLISH, CHINESE))),
        413,
        "too_large",
    )


@pytest.mark.django_db
def test_an_unsigned_alert_is_refused(client, cap_caller):
    body = cap_alert_xml(identifier="HK-UNSIGNED", infos=(ENGLISH,))
    response = client.post(
        reverse("api:cap", kwargs={"integration": cap_caller.integration.slug}),
        data=body,
        content_type="application/cap+xml",
    )
    _refused(response, 401, "signature_missing")


@pytest.mark.django_db
def test_a_cancel_cancels_a_notice_still_waiting_for_approval(
    client, cap_caller, django_capture_on_commit_callbacks
):
    original = cap_alert_xml(identifier="HK-LS-002", infos=(ENGLISH, CHINESE))
    with django_capture_on_commit_callbacks(execute=True):
        notice_id = _post(client, cap_caller, original).json()["notice_id"]
    cancel = cap_alert_xml(
        identifier="HK-LS-002-C",
        msg_type="Cancel",
        references="alerts@example.gov.hk,HK-LS-002,2026-11-27T10:00:00+08:00",
        infos=(ENGLISH,),
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = _post(client, cap_caller, cancel)
    assert response.status_code == 201, response.content
    assert response.json()["cancellations"] == [{"notice_id": notice_id, "state": "cancelled"}]
    assert Notice.objects.get(pk=notice_id).status == Status.CANCELLED
    request = CancellationRequest.objects.get()
    assert request.state == CancellationState.CANCELLED
    assert AuditEvent.objects.filter(action="notices.cancelled").count() == 1
    assert AuditEvent.objects.filter(action="integrations.cancellation_requested").count() == 1


@pytest.mark.django_db
def test_a_cancel_for_a_sent_notice_asks_a_supervisor_to_recall_it(
    client, cap_caller, cast_a, cast_b, django_capture_on_commit_callbacks
):
    from django.core.exceptions import PermissionDenied

    original = cap_alert_xml(identifier="HK-LS-003", infos=(ENGLISH, CHINESE))
    with django_capture_on_commit_callbacks(execute=True):
        notice_id = _post(client, cap_caller, original).json()["notice_id"]
    # Delivery moves the status once it has sent (its own service in production).
    Notice.objects.filter(pk=notice_id).update(status=Status.SENT)
    cancel = cap_alert_xml(
        identifier="HK-LS-003-C",
        msg_type="Cancel",
        references="alerts@example.gov.hk,HK-LS-003,2026-11-27T10:00:00+08:00",
    )
    response = _post(client, cap_caller, cancel)
    assert response.json()["cancellations"] == [{"notice_id": notice_id, "state": "awaiting"}]
    assert Notice.objects.get(pk=notice_id).status == Status.SENT
    request = CancellationRequest.objects.get()
    with pytest.raises(PermissionDenied):
        cancellations.cancellation_decide(
            actor=cast_b.supervisor, cancellation=request, confirm=True
        )
    with pytest.raises(PermissionDenied):
        cancellations.cancellation_decide(
            actor=cast_a.pr_officer, cancellation=request, confirm=True
        )
    # The recall itself is the delivery engine's: without a real send behind the status it
    # refuses, and the request stays waiting for a decision.
    with pytest.raises(ApplicationError) as refused:
        cancellations.cancellation_decide(
            actor=cast_a.supervisor, cancellation=request, confirm=True
        )
    assert refused.value.code == "not_sent"
    request.refresh_from_db()
    assert request.state == CancellationState.AWAITING_CONFIRMATION
    decided = cancellations.cancellation_decide(
        actor=cast_a.supervisor, cancellation=request, confirm=False
    )
    assert decided.state == CancellationState.DISMISSED
    assert decided.decided_by == cast_a.supervisor
    assert AuditEvent.objects.filter(
        action="integrations.cancellation_dismissed", actor=cast_a.supervisor
    ).exists()
    with pytest.raises(ApplicationError):
        cancellations.cancellation_decide(
            actor=cast_a.supervisor, cancellation=request, confirm=False
        )


@pytest.mark.django_db
def test_a_cancel_for_an_unknown_alert_is_refused(client, cap_caller):
    cancel = cap_alert_xml(
        identifier="HK-X-C",
        msg_type="Cancel",
        references="alerts@example.gov.hk,NEVER-SEEN,2026-11-27T10:00:00+08:00",
    )
    _refused(_post(client, cap_caller, cancel), 422, "unknown_reference")


@pytest.mark.django_db
def test_an_integration_without_a_cap_template_refuses_alerts(client, caller):
    _refused(
        _post(client, caller, cap_alert_xml(identifier="HK-NT-1", infos=(ENGLISH,))),
        422,
        "unknown_template",
    )
