"""The per-notice receipt report: scoping, content from real sends, masking, exports."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone
from openpyxl import load_workbook

from accounts.models import Role
from accounts.permissions import grant_role_permissions
from audiences.models import Recipient
from audiences.services import recipient_update
from audiences.testing import mobile_for
from audit.models import AuditEvent, AuditExport, ExportStatus
from audit.tasks import export_events_task
from delivery import messages
from delivery.models import Batch, Delivery, DeliveryPlan, DeliveryState
from delivery.services import followup, receipts
from delivery.testing import connect_department, make_notice, make_recipients, send_notice
from dingtalk.simulator.testing import running_simulator
from notices.models import Tier


@pytest.fixture
def sim(settings):
    with running_simulator(directory_size=200, time_scale=0, readers={"enabled": False}) as dt:
        settings.DINGTALK_BASE_URL = dt.base_url
        settings.DELIVERY_GOVERNOR_URL = "db"
        cache.clear()
        yield dt


@pytest.fixture
def sent(cast_a, sim):
    """A closed-loop notice sent to 6 people: 2 read, 1 of them confirmed, 4 unread."""
    wsd = connect_department(cast_a.department, next(a for a in sim.apps if a.code == "WSD"))
    make_recipients(wsd, 6, languages=("en",))
    for i, person in enumerate(Recipient.objects.filter(department=wsd).order_by("pk")):
        recipient_update(
            actor=cast_a.department_admin,
            recipient=person,
            changes={"name": f"Chan Tai Man {i}", "mobile": mobile_for(i)},
        )
    notice = make_notice(wsd, tier=Tier.CLOSED_LOOP, requires_confirmation=True)
    send_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    sim.sim.advance(5)
    people = list(Delivery.objects.filter(plan=plan).order_by("pk"))
    for person in people[:2]:
        batch = Batch.objects.get(pk=person.batch_id)
        sim.sim.mark_read(batch.task_id, person.dingtalk_user_id)
    sim.sim.advance(60)
    for batch in Batch.objects.filter(dispatch__plan=plan):
        Batch.objects.filter(pk=batch.pk).update(next_poll_at=timezone.now())
        receipts.batch_poll_receipts(batch.pk)
    followup.delivery_confirm(token=messages.confirm_token(people[0].pk))
    return notice


def report_url(notice) -> str:
    return reverse("receipts:report", args=[notice.pk])


def export_url(notice) -> str:
    return reverse("receipts:export", args=[notice.pk])


def rows(response) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(body)))


@pytest.mark.django_db
def test_page_lists_everyone_targeted_with_state_read_and_confirmation(
    sent, cast_a, verified_client
) -> None:
    response = verified_client(cast_a.auditor).get(report_url(sent))
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count("Chan Tai Man") == 6
    assert "Read" in page
    assert "Delivered, unread" in page
    assert f"+852 ••••••{mobile_for(0)[-2:]}" in page
    assert mobile_for(0) not in page  # auditors see names and ids, not full numbers
    only_read = verified_client(cast_a.auditor).get(report_url(sent), {"state": "read"})
    assert only_read.content.decode().count("Chan Tai Man") == 2
    confirmed = verified_client(cast_a.auditor).get(report_url(sent), {"confirmed": "yes"})
    assert confirmed.content.decode().count("Chan Tai Man") == 1
    assert verified_client(cast_a.auditor).get(report_url(sent), {"state": "x"}).status_code == 400
    # In Chinese the counts are of the people targeted, not the "targeted" tier.
    chinese = verified_client(cast_a.auditor).get(report_url(sent), HTTP_ACCEPT_LANGUAGE="zh-hant")
    assert "<dt>目標收件人</dt>" in chinese.content.decode()


@pytest.mark.django_db
def test_other_departments_and_non_auditors_get_404(sent, cast_a, cast_b, verified_client) -> None:
    assert verified_client(cast_b.auditor).get(report_url(sent)).status_code == 404
    assert (
        verified_client(cast_b.auditor).post(export_url(sent), {"format": "csv"}).status_code == 404
    )
    for user in (cast_a.pr_officer, cast_a.supervisor, cast_a.department_admin):
        assert verified_client(user).get(report_url(sent)).status_code == 404
    missing = reverse("receipts:report", args=[sent.pk + 1000])
    assert verified_client(cast_a.auditor).get(missing).status_code == 404
    # A system administrator reads their department's trail but does not export it.
    assert verified_client(cast_a.system_admin).get(report_url(sent)).status_code == 200
    response = verified_client(cast_a.system_admin).post(export_url(sent), {"format": "csv"})
    assert response.status_code == 404
    assert not AuditEvent.objects.filter(action="audit.exported").exists()


@pytest.mark.django_db
def test_csv_export_is_neutralised_masked_and_audited_with_notice_and_filters(
    sent, cast_a, verified_client
) -> None:
    response = verified_client(cast_a.auditor).post(
        export_url(sent), {"format": "csv", "state": "read"}
    )
    assert response.status_code == 200
    exported = rows(response)
    assert len(exported) == 2
    first = exported[0]
    assert first["name"] == "Chan Tai Man 0"
    # "+852 ..." would be read as a formula; it opens as text.
    assert first["mobile"] == f"'+852 ••••••{mobile_for(0)[-2:]}"
    assert first["first_read_at"]
    assert first["confirmed_at"]
    assert exported[1]["confirmed_at"] == ""
    event = AuditEvent.objects.get(action="audit.exported")
    assert event.actor_id == cast_a.auditor.pk
    assert (event.target_type, event.target_id) == ("notices.Notice", str(sent.pk))
    assert event.department_id == sent.department_id
    assert event.data["notice"] == sent.pk
    assert event.data["filters"] == {"state": "read"}
    assert event.data["rows"] == 2
    assert event.data["full_mobiles"] is False


@pytest.mark.django_db
def test_contact_details_holders_get_full_numbers(sent, cast_a, verified_client) -> None:
    # No role combines auditing with contact details (accounts refuses auditor + department
    # admin), so the permission is granted directly, as a superuser could in guardian's admin.
    grant_role_permissions(cast_a.auditor, Role.DEPARTMENT_ADMIN, cast_a.department)
    response = verified_client(cast_a.auditor).post(
        export_url(sent), {"format": "json", "confirmed": "yes"}
    )
    data = json.loads(b"".join(response.streaming_content))
    assert [row["mobile"] for row in data] == [f"'+852{mobile_for(0)}"]
    assert AuditEvent.objects.get(action="audit.exported").data["full_mobiles"] is True


@pytest.mark.django_db
def test_erased_people_keep_their_state_but_not_their_name(sent, cast_a, verified_client) -> None:
    from audiences.services import recipient_erase

    person = Delivery.objects.filter(plan__notice=sent).order_by("pk").first()
    recipient_erase(actor=cast_a.department_admin, recipient=person.recipient, reason="request")
    response = verified_client(cast_a.auditor).post(export_url(sent), {"format": "csv"})
    first = rows(response)[0]
    assert (first["name"], first["mobile"], first["state"]) == ("", "", DeliveryState.READ)


@pytest.mark.django_db
def test_xlsx_goes_to_the_background_and_ran_twice_exports_once(
    sent, cast_a, verified_client, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = verified_client(cast_a.auditor).post(
            export_url(sent), {"format": "xlsx", "state": "unread"}
        )
    job = AuditExport.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("audit:export-detail", args=[job.pk])
    assert job.status == ExportStatus.DONE
    export_events_task.delay(json.loads(json.dumps(str(job.pk))))
    assert AuditEvent.objects.filter(action="audit.exported").count() == 1
    event = AuditEvent.objects.get(action="audit.exported")
    assert event.data["mode"] == "background"
    assert event.data["filters"] == {"state": "unread"}
    with job.file.open("rb") as handle:
        sheet = load_workbook(io.BytesIO(handle.read())).worksheets[0]
    values = list(sheet.values)
    assert values[0][:4] == ("delivery_id", "dingtalk_user_id", "name", "mobile")
    assert len(values) == 1 + 4
    assert all(str(row[3]).startswith("'+852") for row in values[1:])
    detail = verified_client(cast_a.auditor).get(reverse("audit:export-detail", args=[job.pk]))
    assert f"notice={sent.pk}" in detail.content.decode()


@pytest.mark.django_db
def test_large_csv_moves_to_the_background(
    sent, cast_a, verified_client, settings, django_capture_on_commit_callbacks
) -> None:
    settings.AUDIT_EXPORT_SYNC_MAX_ROWS = 3
    with django_capture_on_commit_callbacks(execute=True):
        response = verified_client(cast_a.auditor).post(export_url(sent), {"format": "csv"})
    job = AuditExport.objects.get()
    assert response.status_code == 302
    assert job.status == ExportStatus.DONE
    assert job.rows_written == 6


@pytest.mark.django_db
def test_audit_page_and_event_detail_link_to_the_report(sent, cast_a, verified_client) -> None:
    client = verified_client(cast_a.auditor)
    opened = client.get(reverse("audit:receipts-open"), {"notice": sent.pk})
    assert opened.status_code == 302
    assert opened["Location"] == report_url(sent)
    assert client.get(reverse("audit:receipts-open"), {"notice": "abc"}).status_code == 400
    assert b"receipts-open-form" in client.get(reverse("audit:event-list")).content
    event = AuditEvent.objects.filter(target_type="notices.Notice", target_id=str(sent.pk)).first()
    detail = client.get(reverse("audit:event-detail", args=[event.pk]))
    assert report_url(sent).encode() in detail.content


@pytest.mark.django_db
def test_postgres_copy_writes_the_same_cells_as_the_python_path(sent, cast_a) -> None:
    from django.db import connection

    from audit.spreadsheets import csv_chunks
    from delivery.receipt_copy import receipts_csv_copy
    from delivery.receipt_report import (
        HEADERS,
        ReceiptFilters,
        receipt_rows,
        receipts_filter,
    )

    if connection.vendor != "postgresql":
        pytest.skip("COPY is PostgreSQL's; SQLite writes the report through Python")
    person = Recipient.objects.filter(department=sent.department).order_by("pk").first()
    recipient_update(
        actor=cast_a.department_admin,
        recipient=person,
        changes={"name": '=HYPERLINK("http://evil")'},
    )
    queryset = receipts_filter(sent, ReceiptFilters())

    def parsed(chunks) -> list[list[str]]:
        return list(csv.reader(io.StringIO(b"".join(chunks).decode("utf-8-sig"))))

    seen: list[int] = []
    for contacts in (False, True):
        by_copy = parsed(
            receipts_csv_copy(queryset, HEADERS, contacts=contacts, on_rows=seen.append)
        )
        by_python = parsed(csv_chunks(HEADERS, receipt_rows(queryset, contacts=contacts)))
        assert by_copy == by_python
        assert len(by_copy) == 7
    assert seen[-1] == 6
    names = [row[2] for row in by_copy]
    assert '\'=HYPERLINK("http://evil")' in names
