"""Retention: a year at least, purges only older events, and the rest of the chain still verifies."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from accounts import services as accounts_services
from audit.actions import AuditAction
from audit.checks import check_retention
from audit.models import AuditCheckpoint, AuditEvent
from audit.services import audit_record
from audit.testing import tamper_event
from audit.verification import chain_verify


@pytest.fixture
def old_and_new_events(db):
    """Five events from two years ago, then three from today."""
    two_years_ago = timezone.now() - dt.timedelta(days=730)
    with time_machine.travel(two_years_ago, tick=True):
        old = [
            audit_record(actor=None, action=AuditAction.DEPARTMENT_CREATED, data={"n": i})
            for i in range(5)
        ]
    new = [
        audit_record(actor=None, action=AuditAction.DEPARTMENT_UPDATED, data={"n": i})
        for i in range(3)
    ]
    return old, new


def test_retention_below_a_year_is_a_configuration_error():
    with override_settings(AUDIT_RETENTION_DAYS=364):
        errors = check_retention()
    assert [e.id for e in errors] == ["audit.E001"]
    with override_settings(AUDIT_RETENTION_DAYS=365):
        assert check_retention() == []


def test_purge_refuses_a_date_inside_the_retention_period(old_and_new_events):
    inside = timezone.localdate() - dt.timedelta(days=300)
    with pytest.raises(CommandError, match="Refusing to purge") as refused:
        call_command("audit_purge", "--before", inside.isoformat())
    assert refused.value.returncode == 2
    assert AuditEvent.objects.count() == 8
    assert not AuditEvent.objects.filter(action="audit.purged").exists()


def test_purge_refuses_even_when_retention_is_configured_too_low(old_and_new_events):
    with override_settings(AUDIT_RETENTION_DAYS=1), pytest.raises(CommandError):
        call_command(
            "audit_purge", "--before", (timezone.localdate() - dt.timedelta(days=30)).isoformat()
        )


def test_purge_deletes_older_events_and_leaves_a_verifiable_checkpoint(old_and_new_events, capsys):
    old, new = old_and_new_events
    cutoff = timezone.localdate() - dt.timedelta(days=400)
    call_command("audit_purge", "--before", cutoff.isoformat())
    assert "Purged 5 events" in capsys.readouterr().out
    assert not AuditEvent.objects.filter(pk__in=[e.pk for e in old]).exists()
    checkpoint = AuditCheckpoint.objects.get()
    assert (checkpoint.sequence, checkpoint.hash, checkpoint.events_deleted) == (
        old[-1].sequence,
        old[-1].hash,
        5,
    )
    purged = AuditEvent.objects.get(action="audit.purged")
    assert purged.actor is None
    assert purged.data["deleted"] == 5
    assert purged.data["checkpoint_hash"] == checkpoint.hash
    report = chain_verify()
    assert report.ok, report.message
    assert report.first_sequence == new[0].sequence
    # New events keep extending the same chain.
    audit_record(actor=None, action=AuditAction.DEPARTMENT_UPDATED)
    assert chain_verify().ok


def test_purge_with_nothing_old_enough_still_records_itself(cast_a):
    call_command(
        "audit_purge", "--before", (timezone.localdate() - dt.timedelta(days=400)).isoformat()
    )
    assert AuditEvent.objects.filter(action="audit.purged", data__deleted=0).exists()
    assert not AuditCheckpoint.objects.exists()
    assert chain_verify().ok


def test_purge_refuses_to_destroy_evidence_of_tampering(old_and_new_events):
    old, _ = old_and_new_events
    tamper_event(old[2].pk, data={"n": 99})
    with pytest.raises(CommandError, match="does not verify"):
        call_command(
            "audit_purge", "--before", (timezone.localdate() - dt.timedelta(days=400)).isoformat()
        )
    assert AuditEvent.objects.filter(pk=old[0].pk).exists()


def test_a_checkpoint_without_its_purge_event_does_not_verify(old_and_new_events):
    from audit.testing import delete_event_behind_the_back

    old, _ = old_and_new_events
    for event in old:
        delete_event_behind_the_back(event.pk)
    AuditCheckpoint.objects.create(
        sequence=old[-1].sequence, hash=old[-1].hash, purged_before=timezone.now(), events_deleted=5
    )
    report = chain_verify()
    assert not report.ok
    assert "not confirmed by an audit.purged event" in report.reason


def test_missing_history_without_a_checkpoint_is_named(old_and_new_events):
    from audit.testing import delete_event_behind_the_back

    old, new = old_and_new_events
    for event in old:
        delete_event_behind_the_back(event.pk)
    report = chain_verify()
    assert not report.ok
    assert report.bad_sequence == new[0].sequence


def test_role_changes_after_a_purge_still_chain(old_and_new_events, cast_a):
    call_command(
        "audit_purge", "--before", (timezone.localdate() - dt.timedelta(days=400)).isoformat()
    )
    accounts_services.membership_revoke(
        actor=cast_a.system_admin, membership=cast_a.supervisor2.memberships.get()
    )
    assert chain_verify().ok
