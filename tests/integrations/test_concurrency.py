"""Concurrent deliveries of one trigger on PostgreSQL: one notice, the others answered cleanly."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import connection, connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from integrations.models import Trigger, WarningMapping
from integrations.services import observatory_warnings, warning_mappings
from integrations.testing import signed_headers, warnsum_payloads
from notices.models import Notice, Tier

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip(
            "row locks and unique-constraint races need PostgreSQL (SQLite serialises writers)"
        )


def _in_threads(count: int, work):
    barrier = threading.Barrier(count)
    results: list[object] = [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_the_same_webhook_sent_four_times_at_once_prepares_one_notice(caller):
    body = json.dumps({"template": "rainstorm-black", "values": {"issue_time": "09:30"}}).encode()
    url = reverse("api:trigger", kwargs={"integration": caller.integration.slug})
    base = int(time.time())

    def post(i: int) -> int:
        headers = signed_headers(
            caller.secret, body, timestamp=base - i, idempotency_key="race-key-0001"
        )
        return Client().post(url, data=body, content_type="application/json", **headers).status_code

    statuses = _in_threads(4, post)
    assert statuses.count(201) == 1, statuses
    assert set(statuses) <= {201, 200, 409}
    assert Notice.objects.count() == 1
    assert Trigger.objects.count() == 1
    assert AuditEvent.objects.filter(action="notices.approvers_alerted").count() == 1


def test_overlapping_polls_of_one_warning_prepare_one_notice(cast_a, templates_a):
    warning_mappings.warning_mapping_save(
        actor=None,
        mapping=WarningMapping(
            department=cast_a.department,
            code_pattern="WRAINB",
            template=templates_a["rainstorm-black"],
            tier=Tier.CITYWIDE,
        ),
    )
    payloads = warnsum_payloads(("WRAINB", "ISSUE", timezone.now()))
    results = _in_threads(
        3,
        lambda i: len(
            observatory_warnings.warnings_ingest(english=payloads["en"], chinese=payloads["tc"])
        ),
    )
    assert sum(results) == 1, results
    assert Notice.objects.count() == 1
