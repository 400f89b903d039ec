"""The Chain page: head, anchor and last verification; a verification run in the background,
once however often its task is delivered, with progress an auditor can poll."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from audit.actions import AuditOwnAction
from audit.anchors import anchor_write
from audit.chain_runs import verification_run
from audit.models import AuditEvent, ChainVerification, ExportStatus
from audit.tasks import verify_chain_run_task
from audit.testing import tamper_event
from common.testing.cast import verified_client_for


@pytest.fixture
def anchor_file(settings, tmp_path):
    settings.AUDIT_ANCHOR_FILE = str(tmp_path / "anchors.jsonl")
    return tmp_path / "anchors.jsonl"


def test_an_auditor_sees_the_head_and_its_anchor(cast_a, anchor_file) -> None:
    anchor = anchor_write()
    assert anchor is not None
    page = verified_client_for(cast_a.auditor).get(reverse("audit:chain"))
    assert page.status_code == 200
    text = page.content.decode()
    head = AuditEvent.objects.order_by("-sequence").first()
    assert head.hash in text
    assert anchor.hash in text
    assert "matches the database" in text


def test_people_who_are_not_auditors_get_404(cast_a) -> None:
    client = verified_client_for(cast_a.pr_officer)
    assert client.get(reverse("audit:chain")).status_code == 404
    assert client.post(reverse("audit:chain-verify")).status_code == 404
    assert not ChainVerification.objects.exists()


def test_the_run_ran_twice_verifies_once_and_records_it(
    cast_a, anchor_file, django_capture_on_commit_callbacks
) -> None:
    client = verified_client_for(cast_a.auditor)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        answer = client.post(reverse("audit:chain-verify"))
    assert answer.status_code == 302
    run = ChainVerification.objects.get()
    assert str(run.pk) in answer["Location"]
    # A second press while it waits reuses the same run.
    client.post(reverse("audit:chain-verify"))
    assert ChainVerification.objects.count() == 1
    assert len(queued) == 1

    (run_id,) = json.loads(json.dumps([str(run.pk)]))
    assert verify_chain_run_task.apply(args=(run_id,)).get() is True
    assert verify_chain_run_task.apply(args=(run_id,)).get() is None
    run.refresh_from_db()
    assert run.status == ExportStatus.DONE
    assert run.ok is True
    assert (
        run.checked
        == run.total
        == AuditEvent.objects.filter(sequence__lte=run.head_sequence).count()
    )
    recorded = AuditEvent.objects.filter(action=AuditOwnAction.VERIFIED)
    assert recorded.count() == 1
    assert recorded.get().actor_id == cast_a.auditor.pk

    progress = client.get(reverse("audit:chain-progress", args=[run.pk])).json()
    assert progress["percent"] == 100
    assert progress["ok"] is True
    assert "verified" in progress["outcome"]
    page = client.get(reverse("audit:chain") + f"?run={run.pk}").content.decode()
    assert run.head_hash in page
    assert "Verified" in page


def test_a_tampered_chain_is_reported_broken(cast_a, anchor_file) -> None:
    victim = AuditEvent.objects.order_by("sequence")[2]
    tamper_event(victim.pk, target_label="forged")
    run = ChainVerification.objects.create(requested_by=cast_a.auditor)
    finished = verification_run(verification_id=str(run.pk))
    assert finished is not None
    assert finished.ok is False
    assert "altered" in finished.reason
    recorded = AuditEvent.objects.get(action=AuditOwnAction.VERIFIED)
    assert recorded.data["bad_sequence"] == victim.sequence
    page = verified_client_for(cast_a.auditor).get(reverse("audit:chain")).content.decode()
    assert "Broken" in page


def test_a_bad_run_parameter_is_ignored(cast_a) -> None:
    page = verified_client_for(cast_a.auditor).get(reverse("audit:chain") + "?run=nonsense")
    assert page.status_code == 200
