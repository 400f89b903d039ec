"""The auditors' page: scoping, filters, keyset pages, exports and their audit events."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.test import override_settings
from django.urls import reverse

from accounts import services as accounts_services
from audit.actions import AuditAction
from audit.models import AuditEvent, AuditExport, ExportStatus
from audit.services import audit_record

LIST = reverse("audit:event-list")
EXPORT = reverse("audit:export-create")


def _csv(response) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(body)))


@pytest.fixture
def renamed(cast_a, cast_b):
    """A department settings change in each department: the 'notice-like' target to filter by."""
    for cast in (cast_a, cast_b):
        accounts_services.department_update(
            actor=cast.system_admin,
            department=cast.department,
            changes={"name_en": f"{cast.department.code} renamed"},
        )


def test_auditor_sees_only_their_departments_events(cast_a, cast_b, renamed, verified_client):
    response = verified_client(cast_a.auditor).get(LIST, {"action": AuditAction.DEPARTMENT_UPDATED})
    assert response.status_code == 200
    events = response.context["page"].events
    assert [e.department.code for e in events] == ["WSD"]
    assert b"FEHD renamed" not in response.content


def test_other_departments_events_are_404(cast_a, cast_b, verified_client):
    theirs = AuditEvent.objects.filter(department=cast_b.department).first()
    mine = AuditEvent.objects.filter(department=cast_a.department).first()
    client = verified_client(cast_a.auditor)
    assert client.get(reverse("audit:event-detail", args=[mine.pk])).status_code == 200
    assert client.get(reverse("audit:event-detail", args=[theirs.pk])).status_code == 404


@pytest.mark.parametrize("role", ["pr_officer", "supervisor", "department_admin"])
def test_staff_without_audit_rights_get_404(cast_a, verified_client, role):
    client = verified_client(getattr(cast_a, role))
    event = AuditEvent.objects.filter(department=cast_a.department).first()
    assert client.get(LIST).status_code == 404
    assert client.get(reverse("audit:event-detail", args=[event.pk])).status_code == 404
    assert client.post(EXPORT, {"format": "csv"}).status_code == 404


def test_system_admin_reads_own_department_but_cannot_export(cast_a, cast_b, verified_client):
    client = verified_client(cast_a.system_admin)
    response = client.get(LIST)
    assert response.status_code == 200
    assert {e.department_id for e in response.context["page"].events} == {cast_a.department.pk}
    assert not response.context["can_export"]
    assert client.post(EXPORT, {"format": "csv"}).status_code == 404


def test_filters_narrow_the_list(cast_a, renamed, verified_client):
    client = verified_client(cast_a.auditor)
    dept = cast_a.department
    response = client.get(LIST, {"target_type": "accounts.Department", "target_id": str(dept.pk)})
    actions = {e.action for e in response.context["page"].events}
    assert actions == {AuditAction.DEPARTMENT_CREATED, AuditAction.DEPARTMENT_UPDATED}
    response = client.get(LIST, {"actor": "wsd.sysadmin", "department": "WSD"})
    assert {e.actor_label for e in response.context["page"].events} == {"wsd.sysadmin"}
    response = client.get(LIST, {"q": "renamed"})
    assert [e.action for e in response.context["page"].events] == [AuditAction.DEPARTMENT_UPDATED]


def test_malformed_filters_get_clear_errors(cast_a, verified_client):
    client = verified_client(cast_a.auditor)
    response = client.get(
        LIST,
        {
            "date_from": "2026-13-45",
            "date_to": "2026-01-01",
            "target_type": "not a type",
            "department": "FEHD",
        },
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) == {"date_from", "target_type", "department"}
    assert response.context["page"] is None
    response = client.get(LIST, {"date_from": "2026-02-01", "date_to": "2026-01-01"})
    assert "The end date is before the start date." in response.context["form"].errors["date_to"]


def test_pages_by_keyset_without_counting(cast_a, verified_client, django_assert_max_num_queries):
    for i in range(60):
        audit_record(
            actor=None,
            action=AuditAction.DEPARTMENT_UPDATED,
            department=cast_a.department,
            data={"i": i},
        )
    client = verified_client(cast_a.auditor)
    with django_assert_max_num_queries(25) as captured:
        first = client.get(LIST)
    assert not any("COUNT(" in q["sql"].upper() for q in captured.captured_queries)
    page = first.context["page"]
    assert len(page.events) == 50
    assert page.newer is None
    assert page.older is not None
    second = client.get(LIST, {"before": page.older}).context["page"]
    assert second.events[0].sequence == page.events[-1].sequence - 1
    back = client.get(LIST, {"after": second.events[0].sequence}).context["page"]
    assert back.events[-1].sequence == second.events[0].sequence + 1


def test_csv_export_streams_filtered_rows_and_is_audited(cast_a, cast_b, renamed, verified_client):
    client = verified_client(cast_a.auditor)
    response = client.post(EXPORT, {"format": "csv", "action": AuditAction.DEPARTMENT_UPDATED})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Disposition"].startswith('attachment; filename="audit-trail-')
    rows = _csv(response)
    assert [(r["department"], r["action"]) for r in rows] == [
        ("WSD", AuditAction.DEPARTMENT_UPDATED)
    ]
    exported = AuditEvent.objects.get(action="audit.exported")
    assert exported.actor == cast_a.auditor
    assert exported.department == cast_a.department
    assert exported.data["format"] == "csv"
    assert exported.data["rows"] == 1
    assert exported.data["filters"] == {"action": AuditAction.DEPARTMENT_UPDATED}
    assert exported.data["mode"] == "streamed"


def test_json_export_of_another_department_is_empty(cast_a, cast_b, verified_client):
    response = verified_client(cast_a.auditor).post(EXPORT, {"format": "json", "q": "fehd"})
    rows = json.loads(b"".join(response.streaming_content))
    assert all(r["department"] == "WSD" for r in rows)
    assert not any("FEHD" in r["department"] for r in rows)


def test_export_rejects_malformed_filters(cast_a, verified_client):
    response = verified_client(cast_a.auditor).post(
        EXPORT, {"format": "pdf", "date_from": "yesterday"}
    )
    assert response.status_code == 400
    assert set(response.context["form"].errors) == {"format", "date_from"}
    assert not AuditEvent.objects.filter(action="audit.exported").exists()


@override_settings(AUDIT_EXPORT_SYNC_MAX_ROWS=3)
def test_too_wide_an_export_moves_to_the_background(
    cast_a, verified_client, django_capture_on_commit_callbacks
):
    client = verified_client(cast_a.auditor)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(EXPORT, {"format": "csv"})
    export = AuditExport.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("audit:export-detail", args=[export.pk])
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert b"audit-export.js" in page.content
    progress = client.get(reverse("audit:export-progress", args=[export.pk])).json()
    assert progress["status"] == ExportStatus.DONE
    assert progress["percent"] == 100
    download = client.get(progress["download_url"])
    body = b"".join(download.streaming_content).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(body)))
    assert (
        len(rows)
        == export.head_sequence
        - AuditEvent.objects.exclude(department=cast_a.department)
        .filter(sequence__lte=export.head_sequence)
        .count()
    )
    assert {r["department"] for r in rows} == {"WSD"}
    event = AuditEvent.objects.get(action="audit.exported")
    assert event.data["rows"] == len(rows)
    assert event.data["mode"] == "background"


def test_xlsx_always_goes_to_the_background(cast_a, verified_client):
    response = verified_client(cast_a.auditor).post(EXPORT, {"format": "xlsx"})
    assert response.status_code == 302
    assert AuditExport.objects.get().status == ExportStatus.PENDING  # runs on commit


def test_someone_elses_export_is_404(cast_a, cast_b, verified_client):
    client = verified_client(cast_a.auditor)
    client.post(EXPORT, {"format": "xlsx"})
    export = AuditExport.objects.get()
    for url in ("audit:export-detail", "audit:export-progress", "audit:export-download"):
        assert (
            verified_client(cast_b.auditor).get(reverse(url, args=[export.pk])).status_code == 404
        )
        assert (
            verified_client(cast_a.system_admin).get(reverse(url, args=[export.pk])).status_code
            == 404
        )
    # Not ready yet: no download even for the owner.
    assert client.get(reverse("audit:export-download", args=[export.pk])).status_code == 404
