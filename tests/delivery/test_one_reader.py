"""Issue 17's "one reader": one notice of each strategy, and every page that shows a figure of
it (the dashboard and its JSON, the department summary, the audit receipt report) shows the
same figure, because they all read delivery.rollups.
"""

from __future__ import annotations

import json

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from audiences.models import DirectorySettings, Recipient
from audiences.services import owned_save, recipient_update
from audiences.sync import directory_sync_request
from delivery.models import Batch, BatchStatus, DeliveryPlan, DeliveryState
from delivery.services import receipts
from delivery.testing import connect_department, make_notice, send_notice
from dingtalk.simulator.testing import running_simulator
from notices.models import Tier

APP_KEY = "ding-demo-wsd"
DELIVERED = (DeliveryState.ACCEPTED, DeliveryState.READ, DeliveryState.UNREAD)


# An outsider alone in their own department: with them opted out, a citywide notice goes to the
# other departments (department-wide), no longer to the whole organisation.
SEED = {
    "departments": [{"dept_id": 902, "name": "Contractors", "parent_id": 1}],
    "users": [
        {"userid": "contractor1", "name": "Lee Siu Ming", "mobile": "+85251000003", "dept_id_list": [902]}
    ],
}  # fmt: skip


@pytest.fixture
def sim(settings, tmp_path):
    seed = tmp_path / "directory.json"
    seed.write_text(json.dumps(SEED))
    with running_simulator(
        directory_size=60,
        time_scale=0,
        directory_file=str(seed),
        limits={"per_app_api_calls_per_s": None},
    ) as running:
        settings.DINGTALK_BASE_URL = running.base_url
        settings.DELIVERY_GOVERNOR_URL = "db"
        settings.AUDIENCES_SYNC_CALLS_PER_SECOND = 1000
        cache.clear()
        yield running


@pytest.fixture
def wsd(cast_a, sim, django_capture_on_commit_callbacks):
    department = connect_department(cast_a.department, sim.app(APP_KEY))
    owned_save(actor=None, obj=DirectorySettings(department=department))
    with django_capture_on_commit_callbacks(execute=True):
        directory_sync_request(actor=None, department=department)
    return department


def poll_everything(sim, notice) -> None:
    sim.sim.advance(120)
    for batch in Batch.objects.filter(
        dispatch__plan__notice=notice, status=BatchStatus.ACCEPTED, userids__len__gt=0
    ):
        for userid in batch.userids[:3]:
            sim.sim.mark_read(batch.task_id, userid)
    for batch_id in Batch.objects.filter(
        dispatch__plan__notice=notice, status=BatchStatus.ACCEPTED
    ).values_list("pk", flat=True):
        Batch.objects.filter(pk=batch_id).update(next_poll_at=timezone.now())
        receipts.batch_poll_receipts(batch_id)


@pytest.mark.django_db
def test_one_notice_of_each_strategy_shows_the_same_figures_on_every_page(
    sim, wsd, cast_a, verified_client
) -> None:
    notices = [make_notice(wsd, tier=Tier.CITYWIDE, title="Typhoon signal 8")]  # organisation
    send_notice(notices[0].pk)
    someone = Recipient.objects.get(dingtalk_user_id="contractor1")
    recipient_update(actor=None, recipient=someone, changes={"subscription_state": "unsubscribed"})
    notices.append(make_notice(wsd, tier=Tier.CITYWIDE, title="Typhoon signal 9"))  # departments
    notices.append(make_notice(wsd, tier=Tier.TARGETED, title="Water main repair"))  # batches
    notices.append(
        make_notice(wsd, tier=Tier.CLOSED_LOOP, title="Boil water", requires_confirmation=True)
    )  # one call per person, with personal links
    for notice in notices[1:]:
        send_notice(notice.pk)
    for notice in notices:
        poll_everything(sim, notice)
    strategies = [DeliveryPlan.objects.get(notice=n).strategy for n in notices]
    assert len(set(strategies)) == len(notices), strategies

    officer = verified_client(cast_a.supervisor)
    auditor = verified_client(cast_a.auditor)
    totals = {"planned": 0, "delivered": 0, "read": 0, "confirmed": 0}
    for notice in notices:
        data = json.loads(officer.get(reverse("delivery:dashboard-json", args=[notice.pk])).content)
        page = officer.get(reverse("delivery:dashboard", args=[notice.pk]))
        assert page.context["figures"]["delivered"] == data["delivered"]
        assert page.context["figures"]["read"] == data["read"]
        report = auditor.get(reverse("receipts:report", args=[notice.pk]))
        counts = {state: n for state, _name, n in report.context["counts"]}
        assert sum(counts.values()) == data["planned"] > 0
        assert sum(counts.get(s, 0) for s in DELIVERED) == data["delivered"]
        assert counts.get(DeliveryState.READ, 0) == data["read"]
        assert counts.get(DeliveryState.QUEUED, 0) == data["queued"]
        assert report.context["confirmed"] == data["confirmed"]
        for key in totals:
            totals[key] += data[key]
    assert totals["read"] > 0
    summary = officer.get(reverse("delivery:summary"))
    mine = next(s for s in summary.context["departments"] if s["department"] == wsd)
    assert {key: mine[key] for key in totals} == totals
