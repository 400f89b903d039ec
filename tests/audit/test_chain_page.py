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


def test_the_breakage_reason_is_shown_in_the_reader_s_language(cast_a, anchor_file) -> None:
    """The worker has no reader: it keeps the reason as a code and its values, and the Chain
    page and its progress words it in English or Traditional Chinese."""
    victim = AuditEvent.objects.order_by("sequence")[1]
    tamper_event(victim.pk, target_label="forged")
    run = ChainVerification.objects.create(requested_by=cast_a.auditor)
    verification_run(verification_id=str(run.pk))
    client = verified_client_for(cast_a.auditor)
    zh = {"HTTP_ACCEPT_LANGUAGE": "zh-hant"}
    page = client.get(reverse("audit:chain"), **zh).content.decode()
    assert "其內容與雜湊值不符（該記錄已被改動）" in page  # noqa: RUF001
    assert "altered" not in page
    progress = client.get(reverse("audit:chain-progress", args=[run.pk]), **zh).json()
    assert "其內容與雜湊值不符" in progress["outcome"]
    english = client.get(reverse("audit:chain"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "its content does not match its hash (the row was altered)" in english
    # The hash-chained record keeps one wording, English.
    recorded = AuditEvent.objects.get(action=AuditOwnAction.VERIFIED)
    assert recorded.data["reason"] == "its content does not match its hash (the row was altered)"


def test_a_broken_anchor_is_explained_in_the_reader_s_language(cast_a, anchor_file) -> None:
    anchor_file.write_text('{"day": "2026-12-01", "sequence": 1, "hash": "00"}\n', "utf-8")
    run = ChainVerification.objects.create(requested_by=cast_a.auditor)
    finished = verification_run(verification_id=str(run.pk))
    assert finished is not None
    assert finished.ok is False
    page = verified_client_for(cast_a.auditor).get(
        reverse("audit:chain"), HTTP_ACCEPT_LANGUAGE="zh-hant"
    )
    assert "2026-12-01 的錨點不符：第 #1 項事件的雜湊值是" in page.content.decode()  # noqa: RUF001
    anchor_file.write_text("not an anchor\n", "utf-8")
    page = verified_client_for(cast_a.auditor).get(
        reverse("audit:chain"), HTTP_ACCEPT_LANGUAGE="zh-hant"
    )
    assert "第 1 行不是錨點" in page.content.decode()


def test_a_bad_run_parameter_is_ignored(cast_a) -> None:
    page = verified_client_for(cast_a.auditor).get(reverse("audit:chain") + "?run=nonsense")
    assert page.status_code == 200
