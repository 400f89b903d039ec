"""The hash chain: every event links to the previous one, and audit_verify finds the first bad one."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import translation

from accounts import services as accounts_services
from audit.actions import AuditAction, action_label, is_registered
from audit.chain import GENESIS_HASH, HASHED_FIELDS, content_hash, event_hash
from audit.context import AuditContext, audit_context
from audit.models import AuditEvent
from audit.services import audit_record
from audit.testing import delete_event_behind_the_back, tamper_event
from audit.verification import chain_verify


def _fields(event: AuditEvent) -> dict:
    return {name: getattr(event, name) for name in (*HASHED_FIELDS,)}


def test_events_form_a_chain_from_the_genesis_hash(cast_a):
    events = list(AuditEvent.objects.order_by("sequence"))
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    for event in events:
        event.refresh_from_db()
        assert event_hash(_fields(event)) == event.hash


def test_an_event_records_actor_target_department_and_request_context(cast_a):
    request_id = uuid.uuid4()
    with audit_context(AuditContext(request_id=request_id, ip="203.0.113.9", otp_verified=True)):
        accounts_services.department_update(
            actor=cast_a.system_admin,
            department=cast_a.department,
            changes={"name_en": "Water Supplies Dept"},
        )
    event = AuditEvent.objects.get(action=AuditAction.DEPARTMENT_UPDATED)
    assert event.actor == cast_a.system_admin
    assert event.actor_label == "wsd.sysadmin"
    assert event.actor_department == "WSD"
    assert event.department == cast_a.department
    assert (event.target_type, event.target_id) == (
        "accounts.Department",
        str(cast_a.department.pk),
    )
    assert event.data == {
        "before": {"name_en": "Water Supplies Department"},
        "after": {"name_en": "Water Supplies Dept"},
    }
    assert (event.request_id, event.ip, event.otp_verified) == (request_id, "203.0.113.9", True)


def test_a_persons_events_belong_to_their_department(cast_a):
    event = audit_record(actor=cast_a.auditor, action=AuditAction.LOGGED_IN, target=cast_a.auditor)
    assert event.department == cast_a.department


def test_a_rolled_back_change_leaves_no_event(cast_a):
    before = AuditEvent.objects.count()

    @transaction.atomic
    def change_then_fail() -> None:
        accounts_services.department_update(
            actor=cast_a.system_admin, department=cast_a.department, changes={"name_en": "Renamed"}
        )
        raise RuntimeError("the caller fails after the service")

    with pytest.raises(RuntimeError):
        change_then_fail()
    assert AuditEvent.objects.count() == before
    assert chain_verify().ok


def test_unregistered_actions_are_refused(db):
    with pytest.raises(ValueError, match="Unregistered"):
        audit_record(actor=None, action="audit.invented")


def test_the_trails_own_actions_are_registered():
    for code in ("audit.exported", "audit.purged", "audit.verified"):
        assert is_registered(code)
    with translation.override("en"):
        assert action_label("audit.purged").startswith("Events older")
    # Labels are read in the reader's language.
    with translation.override("zh-hant"):
        assert action_label("audit.purged") == "已清除超過保留期的事件"


def test_data_is_stored_as_the_database_gives_it_back(db):
    when = dt.datetime(2026, 5, 1, 9, 30, tzinfo=dt.UTC)
    event = audit_record(
        actor=None,
        action=AuditAction.DEPARTMENT_CREATED,
        data={"at": when, "ratio": 2.0, "big": 1e20, 3: "x"},
    )
    event.refresh_from_db()
    assert event.data["at"] == "2026-05-01T09:30:00Z"
    assert event.data["3"] == "x"
    assert chain_verify().ok


def test_verify_passes_on_an_intact_chain(cast_a, cast_b):
    report = chain_verify(chunk_size=7)  # several keyset pages
    assert report.ok
    assert report.checked == AuditEvent.objects.count()
    assert report.head_hash == AuditEvent.objects.order_by("-sequence").first().hash


def test_verify_names_exactly_the_altered_event(cast_a):
    victim = AuditEvent.objects.filter(action=AuditAction.ROLE_GRANTED).order_by("sequence")[3]
    tamper_event(victim.pk, target_label="nobody")
    report = chain_verify(chunk_size=5)
    assert not report.ok
    assert (report.bad_sequence, report.bad_event_id) == (victim.sequence, victim.pk)
    assert "altered" in report.reason


def test_verify_names_the_event_after_a_deleted_one(cast_a):
    victim = AuditEvent.objects.order_by("sequence")[4]
    delete_event_behind_the_back(victim.pk)
    report = chain_verify()
    assert not report.ok
    assert report.bad_sequence == victim.sequence + 1
    assert f"#{victim.sequence} is missing" in report.reason


def test_verify_notices_a_rehashed_event_at_the_next_link(cast_a):
    victim = AuditEvent.objects.order_by("sequence")[2]
    forged = {**_fields(victim), "target_label": "forged"}
    tamper_event(
        victim.pk,
        target_label="forged",
        hash=event_hash(forged),
        content_hash=content_hash(forged),
    )
    report = chain_verify()
    assert not report.ok
    assert report.bad_sequence == victim.sequence + 1
    assert "prev_hash" in report.reason


def test_verify_notices_a_stored_content_hash_that_is_not_the_content_s(cast_a):
    """Exports carry the stored content hash: it must be the content's, or a file would link
    rows whose cells say something else."""
    victim = AuditEvent.objects.order_by("sequence")[2]
    forged = {**_fields(victim), "target_label": "forged"}
    tamper_event(victim.pk, content_hash=content_hash(forged))
    report = chain_verify()
    assert not report.ok
    assert report.bad_sequence == victim.sequence
    assert "stored content hash" in report.reason


def test_audit_verify_command_succeeds_and_records_the_head(cast_a, capsys):
    call_command("audit_verify")
    assert "Audit chain verified" in capsys.readouterr().out
    verified = AuditEvent.objects.get(action="audit.verified")
    assert verified.data["ok"] is True
    assert verified.actor is None
    assert chain_verify().ok


def test_audit_verify_command_fails_naming_the_event(cast_a):
    victim = AuditEvent.objects.order_by("sequence")[1]
    tamper_event(victim.pk, data={"forged": True})
    with pytest.raises(CommandError) as failure:
        call_command("audit_verify", "--no-record")
    assert failure.value.returncode == 1
    assert f"event #{victim.sequence} (id {victim.pk})" in str(failure.value)
    assert not AuditEvent.objects.filter(action="audit.verified").exists()
