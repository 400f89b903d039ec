"""An export can be checked on its own: the chain proof fills the gaps a department's export
has, carries the content behind each of its rows' hashes, and shows nothing of another
department's events but their hashes."""

from __future__ import annotations

import csv
import io
import itertools
import json

from django.urls import reverse

from audit.actions import AuditAction, AuditOwnAction
from audit.models import AuditEvent
from audit.proofs import proof_check
from audit.services import audit_record
from audit.testing import tamper_event
from common.testing.cast import verified_client_for


def _download(client, **params) -> list[str]:
    response = client.get(reverse("audit:export-proof"), params)
    assert response.status_code == 200
    return b"".join(response.streaming_content).decode().splitlines(keepends=True)


def test_a_departments_export_verifies_with_its_proof_alone(cast_a, cast_b) -> None:
    for department in (cast_a.department, cast_b.department, cast_a.department):
        audit_record(actor=None, action=AuditAction.LOGIN_FAILED, department=department)
    client = verified_client_for(cast_a.auditor)
    exported = client.post(reverse("audit:export-create"), {"format": "csv"})
    rows = list(
        csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode("utf-8-sig")))
    )
    assert {r["department"] for r in rows} == {"WSD"}
    sequences = sorted(int(r["sequence"]) for r in rows)
    # The gaps: the export's rows are not one unbroken chain.
    by_sequence = {int(r["sequence"]): r for r in rows}
    assert any(
        by_sequence[b]["prev_hash"] != by_sequence[a]["hash"]
        for a, b in itertools.pairwise(sequences)
    )

    lines = _download(client)
    ok, message = proof_check(iter(lines))
    assert ok, message
    items = [json.loads(line) for line in lines[1:]]
    # Every event from the first exported one on, with no gap (the export's own audit event,
    # written after it, is in the proof too).
    assert [i["sequence"] for i in items] == list(range(sequences[0], items[-1]["sequence"] + 1))
    assert items[-1]["sequence"] >= sequences[-1]
    proven = {i["sequence"]: i for i in items}
    for row in rows:
        item = proven[int(row["sequence"])]
        assert item["hash"] == row["hash"]
        assert "content" in item
    fehd = AuditEvent.objects.filter(department=cast_b.department, sequence__in=proven)
    assert fehd.exists()
    for event in fehd:
        assert "content" not in proven[event.sequence]  # another department's: hashes only
    assert AuditEvent.objects.filter(action=AuditOwnAction.EXPORTED, data__format="proof").exists()


def test_a_proof_of_an_altered_row_fails_its_check(cast_a) -> None:
    victim = AuditEvent.objects.filter(department=cast_a.department).order_by("sequence")[1]
    tamper_event(victim.pk, target_label="forged")
    ok, message = proof_check(iter(_download(verified_client_for(cast_a.auditor))))
    assert not ok
    assert f"#{victim.sequence}" in message


def test_only_auditors_who_may_export_get_a_proof(cast_a) -> None:
    response = verified_client_for(cast_a.pr_officer).get(reverse("audit:export-proof"))
    assert response.status_code == 404
