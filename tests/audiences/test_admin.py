from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse

from audiences.importing import recipients_import
from audiences.models import ImportJob, ImportState, Recipient
from audiences.testing import csv_bytes, recipient_row
from audit.models import AuditEvent


def _seed(cast, n=3):
    recipients_import(
        actor=None,
        department=cast.department,
        data=csv_bytes(recipient_row(i) for i in range(n)),
        file_name="seed.csv",
    )


def _upload(client, cast, data: bytes, name="list.csv"):
    return client.post(
        reverse("admin:audiences_recipient_import"),
        {
            "department": cast.department.pk,
            "format": "0",
            "import_file": SimpleUploadedFile(name, data, "text/csv"),
            "resource": "0",
        },
    )


def test_changelist_masks_numbers_for_auditors_and_shows_them_to_admins(
    cast_a, cast_b, verified_client
):
    _seed(cast_a)
    _seed(cast_b)
    url = reverse("admin:audiences_recipient_changelist")
    admin_page = verified_client(cast_a.department_admin).get(url)
    assert admin_page.status_code == 200
    assert "+85290100000" in admin_page.content.decode()
    assert admin_page.context["cl"].result_count == 3  # only WSD's recipients
    auditor_page = verified_client(cast_a.auditor).get(url)
    assert auditor_page.status_code == 200
    body = auditor_page.content.decode()
    assert "+85290100000" not in body
    assert "+852 ••••••00" in body
    assert verified_client(cast_a.pr_officer).get(url).status_code == 403


def test_other_departments_recipient_is_404(cast_a, cast_b, verified_client):
    _seed(cast_b)
    other = Recipient.objects.filter(department=cast_b.department).first()
    response = verified_client(cast_a.department_admin).get(
        reverse("admin:audiences_recipient_change", args=[other.pk])
    )
    assert response.status_code in (302, 404)
    assert Recipient.objects.get(pk=other.pk).name == other.name


def test_admin_import_preview_then_confirm_then_reimport(cast_a, verified_client):
    client = verified_client(cast_a.department_admin)
    _seed(cast_a, 2)
    rows = [recipient_row(0, name="Changed"), recipient_row(1), recipient_row(2)]
    preview = _upload(client, cast_a, csv_bytes(rows))
    assert preview.status_code == 200
    result = preview.context["result"]
    assert result.totals["new"] == 1
    assert result.totals["update"] == 1
    assert result.totals["skip"] == 1
    assert (
        Recipient.objects.get(dingtalk_user_id="u0000000").name == "Person 0"
    )  # preview wrote nothing
    confirm = preview.context["confirm_form"]
    done = client.post(reverse("admin:audiences_recipient_process_import"), {**confirm.initial})
    assert done.status_code == 302
    assert Recipient.objects.get(dingtalk_user_id="u0000000").name == "Changed"
    assert Recipient.objects.filter(department=cast_a.department).count() == 3
    event = AuditEvent.objects.filter(action="audiences.imported").order_by("-id").first()
    assert event.data["path"] == "admin"
    assert event.data["new"] == 1
    again = _upload(client, cast_a, csv_bytes(rows))
    assert again.context["result"].totals["skip"] == 3


def test_admin_import_of_a_bad_file_shows_every_reason_and_no_confirm(cast_a, verified_client):
    client = verified_client(cast_a.department_admin)
    rows = [recipient_row(0), recipient_row(1, mobile="12345"), recipient_row(2, district="Mars")]
    preview = _upload(client, cast_a, csv_bytes(rows))
    assert preview.status_code == 200
    assert "confirm_form" not in preview.context
    body = preview.content.decode()
    assert "Line 3" in body
    assert "Line 4" in body
    assert "Mars" in body
    assert not Recipient.objects.exists()


def test_department_admin_cannot_import_into_another_department(cast_a, cast_b, verified_client):
    client = verified_client(cast_a.department_admin)
    response = _upload(client, cast_b, csv_bytes([recipient_row(1)]))
    assert response.status_code == 200
    assert "department" in response.context["form"].errors
    assert not Recipient.objects.exists()


@override_settings(AUDIENCES_ADMIN_SYNC_MAX_ROWS=3)
def test_large_admin_upload_runs_as_a_job_with_progress(
    cast_a, verified_client, django_capture_on_commit_callbacks
):
    client = verified_client(cast_a.department_admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = _upload(client, cast_a, csv_bytes(recipient_row(i) for i in range(10)))
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("audiences:import-job", args=["WSD", job.pk])
    assert job.state == ImportState.VALIDATED
    assert job.counts["new"] == 10
    assert not Recipient.objects.exists()
    progress = client.get(reverse("audiences:import-job-progress", args=["WSD", job.pk])).json()
    assert progress["state"] == "validated"
    assert progress["percent"] == 100
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("audiences:import-job", args=["WSD", job.pk]))
    job.refresh_from_db()
    assert job.state == ImportState.DONE
    assert Recipient.objects.count() == 10


def test_export_neutralises_formulas_and_is_audited(cast_a, verified_client):
    _seed(cast_a, 1)
    Recipient.objects.update(name="=cmd|' /C calc'!A0")
    client = verified_client(cast_a.department_admin)
    response = client.post(
        reverse("admin:audiences_recipient_export"),
        {
            "format": "0",
            "resource": "0",
            **{f"recipientresource_{f}": "on" for f in ("dingtalk_user_id", "name", "mobile")},
        },
    )
    assert response.status_code == 200, response.content[:500]
    text = response.content.decode()
    assert "'=cmd" in text
    assert AuditEvent.objects.filter(action="audiences.exported").exists()


def test_import_page_lists_every_column_its_values_and_a_sample_that_imports(
    cast_a, verified_client
):
    from pathlib import Path

    from django.conf import settings

    from audiences.import_guide import COLUMNS, SAMPLE_FILE
    from audiences.validation import ALL_COLUMNS, REQUIRED_COLUMNS

    assert tuple(c.name for c in COLUMNS) == ALL_COLUMNS
    assert {c.name for c in COLUMNS if c.required} == set(REQUIRED_COLUMNS)
    client = verified_client(cast_a.department_admin)
    page = client.get(reverse("admin:audiences_recipient_import")).content.decode()
    assert 'id="import-columns"' in page
    for column in ALL_COLUMNS:
        assert f'<code lang="en">{column}</code>' in page
    assert "zh-hant" in page
    assert '<code>ST</code> <span lang="en">Sha Tin</span>' in page
    assert f'/static/{SAMPLE_FILE}"' in page
    sample = (Path(settings.BASE_DIR) / "static" / SAMPLE_FILE).read_bytes()
    preview = _upload(client, cast_a, sample, name="recipients-sample.csv")
    result = preview.context["result"]
    assert not result.has_errors()
    assert not result.has_validation_errors()
    assert result.totals["new"] == 3


def test_row_errors_are_in_the_page_not_in_a_hover_box(cast_a, verified_client):
    client = verified_client(cast_a.department_admin)
    rows = [recipient_row(0), recipient_row(1, mobile="12345")]
    body = _upload(client, cast_a, csv_bytes(rows)).content.decode()
    assert "Line 3" in body
    assert "validation-error-container" not in body
