"""Every audiences Celery task survives a second delivery; stale work is swept to failed."""

from __future__ import annotations

import json
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.test import override_settings
from django.utils import timezone, translation

from accounts.services import department_update
from audiences.import_jobs import import_job_confirm, import_job_start
from audiences.models import (
    DirectorySettings,
    DirectorySync,
    ImportJob,
    ImportState,
    Recipient,
    SyncState,
)
from audiences.services import owned_save
from audiences.sync import directory_sync_request
from audiences.tasks import (
    apply_import_job_task,
    sweep_stale_work_task,
    sync_directory_task,
    validate_import_job_task,
)
from audiences.testing import csv_bytes, recipient_row
from audit.models import AuditEvent
from common.testing.cast import verified_client_for
from dingtalk.simulator.config import AppConfig, demo_aes_key
from dingtalk.simulator.testing import running_simulator

APP_KEY = "ding-test-wsd"


def _connect(cast, monkeypatch) -> AppConfig:
    monkeypatch.setenv("WSD_APP_SECRET", "wsd-secret")
    department_update(
        actor=None,
        department=cast.department,
        changes={"dingtalk_app_key": APP_KEY, "dingtalk_secret_ref": "env:WSD_APP_SECRET"},
    )
    cast.department.refresh_from_db()
    owned_save(actor=None, obj=DirectorySettings(department=cast.department))
    return AppConfig(
        app_key=APP_KEY,
        app_secret="wsd-secret",
        agent_id=3003,
        code="WSD",
        callback_token="wsd-token",
        callback_aes_key=demo_aes_key("wsd"),
    )


def _args(*values: object) -> list[object]:
    # Celery hands tasks JSON: prove the ids survive the trip.
    return list(json.loads(json.dumps(values)))


def test_an_import_job_writes_its_row_errors_in_the_starter_s_language(
    cast_a, django_capture_on_commit_callbacks
) -> None:
    """The worker has no reader: the job remembers who started it in which language, and the
    page marks the errors with that language (lang attribute) for any other reader."""
    with translation.override("zh-hant"):
        job = import_job_start(
            actor=cast_a.department_admin,
            department=cast_a.department,
            data=csv_bytes([recipient_row(1, district="Nowhere")]),
            file_name="one.csv",
            file_format="csv",
        )
    validate_import_job_task.apply(args=_args(job.pk))
    job.refresh_from_db()
    assert job.state == ImportState.REJECTED
    assert job.errors[0]["reason"] == "地區 'Nowhere' 不屬於 18 區之一（請使用 SS 或 KC 等代碼）"  # noqa: RUF001
    client = verified_client_for(cast_a.department_admin)
    page = client.get(f"/audiences/{cast_a.department.code}/imports/{job.pk}/").content.decode()
    assert '<span lang="zh-Hant-HK">地區 &#x27;Nowhere&#x27; 不屬於' in page


def test_import_job_tasks_run_twice_do_the_work_once(cast_a, django_capture_on_commit_callbacks):
    job = import_job_start(
        actor=cast_a.department_admin,
        department=cast_a.department,
        data=csv_bytes(recipient_row(i) for i in range(4)),
        file_name="four.csv",
        file_format="csv",
    )
    validate_import_job_task.apply(args=_args(job.pk))
    validate_import_job_task.apply(args=_args(job.pk))
    job.refresh_from_db()
    assert job.state == ImportState.VALIDATED
    with django_capture_on_commit_callbacks(execute=False):
        import_job_confirm(actor=cast_a.department_admin, job=job)
    apply_import_job_task.apply(args=_args(job.pk))
    first_stamp = Recipient.objects.order_by("pk").values_list("updated_at", flat=True).first()
    apply_import_job_task.apply(args=_args(job.pk))
    job.refresh_from_db()
    assert job.state == ImportState.DONE
    assert job.counts["new"] == 4
    assert Recipient.objects.count() == 4
    assert Recipient.objects.order_by("pk").values_list("updated_at", flat=True).first() == (
        first_stamp
    )
    assert AuditEvent.objects.filter(action="audiences.imported").count() == 1


def test_directory_sync_task_delivered_twice_walks_once(
    cast_a, monkeypatch, django_capture_on_commit_callbacks
):
    app = _connect(cast_a, monkeypatch)
    with (
        running_simulator(apps=[app], directory_size=30) as dt,
        override_settings(DINGTALK_BASE_URL=dt.base_url),
    ):
        with django_capture_on_commit_callbacks(execute=False):
            sync = directory_sync_request(
                actor=cast_a.department_admin, department=cast_a.department
            )
        sync_directory_task.apply(args=_args(sync.pk))
        calls_after_first = len(dt.sim.requests())
        people = Recipient.objects.count()
        sync_directory_task.apply(args=_args(sync.pk))
        # The second delivery finds the run claimed: not one more call to DingTalk.
        assert len(dt.sim.requests()) == calls_after_first
    sync.refresh_from_db()
    assert sync.state == SyncState.DONE
    assert people == 30
    assert Recipient.objects.count() == people
    assert AuditEvent.objects.filter(action="audiences.synced").count() == 1


def _stuck_job(cast, state: str, claimed_ago: timedelta) -> ImportJob:
    job = ImportJob(
        department=cast.department,
        created_by=cast.department_admin,
        file_name="stuck.csv",
        file_sha256="0" * 64,
        file_format="csv",
        state=state,
        state_changed_at=timezone.now() - claimed_ago,
    )
    job.file.save("stuck.csv", ContentFile(b"x"), save=False)
    job.save()
    return job


def test_sweeper_fails_work_whose_worker_died_and_leaves_live_work_alone(cast_a):
    limit = timedelta(seconds=settings.AUDIENCES_STALE_WORK_AFTER_S)
    dead_check = _stuck_job(cast_a, ImportState.VALIDATING, limit + timedelta(minutes=1))
    dead_apply = _stuck_job(cast_a, ImportState.APPLYING, limit + timedelta(minutes=1))
    live_apply = _stuck_job(cast_a, ImportState.APPLYING, timedelta(minutes=5))
    waiting = _stuck_job(cast_a, ImportState.VALIDATED, limit * 3)
    dead_sync = DirectorySync.objects.create(
        department=cast_a.department,
        state=SyncState.RUNNING,
        started_at=timezone.now() - limit - timedelta(minutes=1),
    )
    live_sync = DirectorySync.objects.create(
        department=cast_a.department, state=SyncState.RUNNING, started_at=timezone.now()
    )

    assert sweep_stale_work_task.apply().get() == {"import_jobs": 2, "syncs": 1}
    # The beat may deliver twice, or two beats overlap: the second sweep finds nothing.
    assert sweep_stale_work_task.apply().get() == {"import_jobs": 0, "syncs": 0}

    for job in (dead_check, dead_apply):
        job.refresh_from_db()
        assert job.state == ImportState.FAILED
        assert "nothing was written" in job.errors[0]["reason"]
        assert job.finished_at is not None
    for job, state in ((live_apply, ImportState.APPLYING), (waiting, ImportState.VALIDATED)):
        job.refresh_from_db()
        assert job.state == state
    dead_sync.refresh_from_db()
    live_sync.refresh_from_db()
    assert dead_sync.state == SyncState.FAILED
    assert "worker stopped" in dead_sync.error
    assert live_sync.state == SyncState.RUNNING
    assert Recipient.objects.count() == 0
    assert AuditEvent.objects.filter(action="audiences.import_failed").count() == 2
    assert AuditEvent.objects.filter(action="audiences.sync_failed").count() == 1


def test_sweeper_is_on_the_beat_schedule():
    entry = settings.CELERY_BEAT_SCHEDULE["audiences-sweep-stale-work"]
    assert entry["task"] == sweep_stale_work_task.name
    assert entry["schedule"] <= settings.AUDIENCES_STALE_WORK_AFTER_S
    # Later than every audiences task's hard time limit, so a live worker is never swept.
    assert (
        max(
            t.time_limit or 0
            for t in (validate_import_job_task, apply_import_job_task, sync_directory_task)
        )
        < settings.AUDIENCES_STALE_WORK_AFTER_S
    )
