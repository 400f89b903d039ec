"""Admin smoke tests: the back office shows the trail read-only and scoped."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.actions import AuditAction
from audit.models import AuditEvent

CHANGELIST = reverse("admin:audit_auditevent_changelist")


def test_changelist_is_scoped_and_filterable(cast_a, cast_b, verified_client):
    client = verified_client(cast_a.auditor)
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    shown = list(response.context["cl"].result_list)
    assert shown
    assert {e.department_id for e in shown} == {cast_a.department.pk}
    dept = cast_a.department
    for params in (
        {"occurred_from": "2000-01-01", "occurred_to": "2100-01-01"},
        {"department": "WSD"},
        {"actor": "wsd.sysadmin"},
        {"action": AuditAction.ROLE_GRANTED},
        {"target_type": "accounts.Department"},
        {"q": str(dept.pk)},
    ):
        response = client.get(CHANGELIST, params)
        assert response.status_code == 200, params
    response = client.get(CHANGELIST, {"action": AuditAction.DEPARTMENT_CREATED})
    assert [e.target_id for e in response.context["cl"].result_list] == [str(dept.pk)]
    response = client.get(CHANGELIST, {"occurred_from": "2100-01-01"})
    assert list(response.context["cl"].result_list) == []


def test_a_malformed_date_is_refused_not_crashed(cast_a, verified_client):
    response = verified_client(cast_a.auditor).get(CHANGELIST, {"occurred_from": "not-a-date"})
    assert response.status_code == 302
    assert "e=1" in response["Location"]


def test_detail_is_read_only(cast_a, verified_client):
    event = AuditEvent.objects.filter(department=cast_a.department).first()
    client = verified_client(cast_a.auditor)
    url = reverse("admin:audit_auditevent_change", args=[event.pk])
    response = client.get(url)
    assert response.status_code == 200
    assert event.hash.encode() in response.content
    assert b'name="_save"' not in response.content
    assert client.post(url, {"target_label": "rewritten"}).status_code == 403
    event.refresh_from_db()
    assert event.target_label != "rewritten"


def test_no_add_or_delete(cast_a, verified_client):
    event = AuditEvent.objects.filter(department=cast_a.department).first()
    client = verified_client(cast_a.auditor)
    assert client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    assert client.get(reverse("admin:audit_auditevent_delete", args=[event.pk])).status_code == 403
    assert (
        client.post(
            reverse("admin:audit_auditevent_delete", args=[event.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_other_departments_events_are_not_found(cast_a, cast_b, verified_client):
    theirs = AuditEvent.objects.filter(department=cast_b.department).first()
    response = verified_client(cast_a.auditor).get(
        reverse("admin:audit_auditevent_change", args=[theirs.pk])
    )
    assert response.status_code == 302  # the admin's "does not exist" redirect
    assert theirs.hash.encode() not in response.content


@pytest.mark.parametrize("role", ["pr_officer", "department_admin"])
def test_staff_without_audit_rights_cannot_open_it(cast_a, verified_client, role):
    assert verified_client(getattr(cast_a, role)).get(CHANGELIST).status_code == 403


def test_system_admin_sees_own_department_only(cast_a, cast_b, verified_client):
    response = verified_client(cast_b.system_admin).get(CHANGELIST)
    assert response.status_code == 200
    assert {e.department_id for e in response.context["cl"].result_list} == {cast_b.department.pk}
