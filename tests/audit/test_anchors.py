"""Daily anchors: the chain's head outside the database, and audit_verify checking against them."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.actions import AuditOwnAction
from audit.anchors import anchor_write
from audit.models import AuditEvent
from audit.tasks import write_anchor_task
from audit.testing import delete_event_behind_the_back

DAY1, DAY2 = dt.date(2026, 12, 1), dt.date(2026, 12, 2)


@pytest.fixture
def anchor_file(settings, tmp_path):
    settings.AUDIT_ANCHOR_FILE = str(tmp_path / "worm" / "anchors.jsonl")
    settings.AUDIT_ANCHOR_EMAILS = ["records@example.gov.hk"]
    return tmp_path / "worm" / "anchors.jsonl"


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_task_ran_twice_writes_one_anchor_mails_it_once_and_audits_it(
    cast_a, anchor_file, django_capture_on_commit_callbacks
) -> None:
    cast_a.auditor.email = "auditor@wsd.example.gov.hk"
    cast_a.auditor.save()
    head = AuditEvent.objects.order_by("-sequence").first()
    with django_capture_on_commit_callbacks(execute=True):
        assert write_anchor_task.apply().get() == head.sequence
    with django_capture_on_commit_callbacks(execute=True):
        assert write_anchor_task.apply().get() is None
    (anchor,) = lines(anchor_file)
    assert (anchor["sequence"], anchor["hash"]) == (head.sequence, head.hash)
    assert len(mail.outbox) == 1
    assert set(mail.outbox[0].to) == {"auditor@wsd.example.gov.hk", "records@example.gov.hk"}
    assert head.hash in mail.outbox[0].body
    recorded = AuditEvent.objects.get(action=AuditOwnAction.ANCHORED)
    assert recorded.data["sequence"] == head.sequence


def test_audit_verify_agrees_with_honest_anchors(cast_a, anchor_file, capsys) -> None:
    anchor_write(day=DAY1)
    anchor_write(day=DAY2)
    call_command("audit_verify", "--no-record", "--anchors")
    assert "2 daily anchors agree" in capsys.readouterr().out


def test_anchors_name_the_first_day_that_disagrees(cast_a, anchor_file) -> None:
    anchor_write(day=DAY1)
    head = AuditEvent.objects.order_by("-sequence").first()
    with anchor_file.open("a") as out:
        forged = {"day": "2026-12-02", "sequence": head.sequence, "hash": "f" * 64}
        out.write(json.dumps(forged) + "\n")
    with pytest.raises(CommandError) as failure:
        call_command("audit_verify", "--no-record", "--anchors")
    assert "Anchor of 2026-12-02 disagrees" in str(failure.value)
    assert f"event #{head.sequence} has hash {head.hash}" in str(failure.value)


def test_a_lost_tail_fails_unless_a_restore_is_accepted(cast_a, anchor_file, capsys) -> None:
    first = anchor_write(day=DAY1)
    assert first is not None
    second = anchor_write(day=DAY2)  # the first anchor's own audit event moved the head on
    assert second is not None
    assert second.sequence > first.sequence
    # As if the database were restored from a backup taken between the two anchors.
    for event in AuditEvent.objects.filter(sequence__gt=first.sequence):
        delete_event_behind_the_back(event.pk)
    call_command("audit_verify", "--no-record")  # the chain that is left is whole
    with pytest.raises(CommandError) as failure:
        call_command("audit_verify", "--no-record", "--anchors")
    assert "Anchor of 2026-12-02 disagrees: the chain ends at" in str(failure.value)
    call_command("audit_verify", "--no-record", "--anchors", "--accept-restore")
    assert "2 daily anchors agree" in capsys.readouterr().out


def test_a_damaged_anchor_file_is_named(cast_a, anchor_file) -> None:
    anchor_write(day=DAY1)
    with anchor_file.open("a") as out:
        out.write("not json\n")
    with pytest.raises(CommandError, match="line 2 is not an anchor"):
        call_command("audit_verify", "--no-record", "--anchors")
