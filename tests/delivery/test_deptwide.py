"""Department-wide sends: which citywide audiences map exactly onto DingTalk departments.

Recipients come from the real directory sync against the simulator's directory: root 1, the 18
districts (100-117) each with a volunteer unit below it (200-217), two people in each of those
36 departments, plus a seeded shelter team (900) with its drivers below it (901) and a
contractors' department (902).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from audiences.models import DirectorySettings, Recipient
from audiences.services import owned_save, recipient_erase, recipient_update
from audiences.sync import directory_sync_request
from audit.models import AuditEvent
from delivery import deptwide, quota, tasks
from delivery.models import (
    Batch,
    BatchStatus,
    Delivery,
    DeliveryPlan,
    DeliveryState,
    PlanStatus,
    effective_state,
)
from delivery.services import outbox, planner, receipts, sender
from delivery.testing import connect_department, make_notice, make_recipients
from dingtalk import messages as dt
from dingtalk.client import DingTalkClient
from dingtalk.simulator.testing import running_simulator
from notices import attachments as notice_attachments
from notices.models import Notice, Status, Tier
from notices.testing import seal_approved

APP_KEY = "ding-demo-wsd"
DISTRICTS = list(range(100, 118))
SHELTER, DRIVERS, CONTRACTORS = 900, 901, 902
SEED = {
    "departments": [
        {"dept_id": SHELTER, "name": "Shelter team", "parent_id": 1},
        {"dept_id": DRIVERS, "name": "Shelter drivers", "parent_id": SHELTER},
        {"dept_id": CONTRACTORS, "name": "Contractors", "parent_id": 1},
    ],
    "users": [
        {"userid": "shelter1", "name": "Chan Tai Man", "mobile": "+85251000001", "dept_id_list": [SHELTER]},
        {"userid": "driver1", "name": "Wong Ka Yan", "mobile": "+85251000002", "dept_id_list": [DRIVERS]},
        {"userid": "contractor1", "name": "Lee Siu Ming", "mobile": "+85251000003", "dept_id_list": [CONTRACTORS]},
    ],
}  # fmt: skip
PEOPLE = 72 + 3


@pytest.fixture
def sim(settings, tmp_path):
    seed = tmp_path / "directory.json"
    seed.write_text(json.dumps(SEED))
    # The clock stands still (time_scale=0), so the per-second API limit is off for the sync.
    with running_simulator(
        directory_size=72,
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
def wsd(cast_a, sim):
    department = connect_department(cast_a.department, sim.app(APP_KEY))
    owned_save(actor=None, obj=DirectorySettings(department=department))
    return department


def sync(department, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        directory_sync_request(actor=None, department=department)


def citywide(department) -> Notice:
    return make_notice(department, tier=Tier.CITYWIDE)


def opt_out(userid: str) -> None:
    recipient = Recipient.objects.get(dingtalk_user_id=userid, erased_at__isnull=True)
    recipient_update(
        actor=None, recipient=recipient, changes={"subscription_state": "unsubscribed"}
    )


def test_a_fully_subscribed_directory_is_one_send_to_the_root(
    wsd, django_capture_on_commit_callbacks
) -> None:
    sync(wsd, django_capture_on_commit_callbacks)
    notice = citywide(wsd)
    assert deptwide.dept_wide_ids(notice) == [1]
    plan = deptwide.dept_wide_plan(notice)
    assert plan is not None
    assert [(g.dept_ids, g.size) for g in plan.groups] == [([1], PEOPLE)]
    # The audience it counts is the one the engine snapshots.
    assert set(Recipient.objects.filter(deptwide.AUDIENCE, department=wsd)) == set(
        outbox.audience_recipients(notice)
    )


def test_an_outsider_keeps_only_their_own_department_out_and_the_send_reaches_exactly_the_rest(
    sim, wsd, django_capture_on_commit_callbacks
) -> None:
    sync(wsd, django_capture_on_commit_callbacks)
    opt_out("contractor1")
    notice = citywide(wsd)
    # The root holds the contractor: each district (with its volunteers) and the shelter team
    # (with its drivers) go instead.
    assert deptwide.dept_wide_ids(notice) == sorted([*DISTRICTS, SHELTER])
    plan = deptwide.dept_wide_plan(notice, max_depts=5)
    assert plan is not None
    assert [len(g.dept_ids) for g in plan.groups] == [5, 5, 5, 4]
    assert plan.size == PEOPLE - 1
    # In the simulator, DingTalk's own sub-department rule reaches exactly the audience.
    app = sim.app(APP_KEY)
    client = DingTalkClient(app.app_key, app.app_secret, app.agent_id, base_url=sim.base_url)
    tasks = [
        client.send(dt.text("Typhoon shelters open"), dept_ids=g.dept_ids) for g in plan.groups
    ]
    sim.sim.advance(5)
    assert all(client.get_send_progress(t.task_id).done for t in tasks)
    audience = list(
        Recipient.objects.filter(deptwide.AUDIENCE, department=wsd).values_list(
            "dingtalk_user_id", flat=True
        )
    )
    counts = Counter(len(sim.sim.inbox(userid, APP_KEY)) for userid in audience)
    assert counts == Counter({1: PEOPLE - 1})
    assert sim.sim.inbox("contractor1", APP_KEY) == []


def test_an_outsider_in_a_sub_department_keeps_its_parent_out(
    wsd, django_capture_on_commit_callbacks
) -> None:
    sync(wsd, django_capture_on_commit_callbacks)
    opt_out("driver1")
    # shelter1 is alone in the shelter team, but a send to it would reach the drivers below.
    assert deptwide.dept_wide_ids(citywide(wsd)) is None


def test_an_outsider_sharing_a_department_with_the_audience_means_no_department_send(
    wsd, django_capture_on_commit_callbacks
) -> None:
    sync(wsd, django_capture_on_commit_callbacks)
    opt_out("wsd0000000")  # one of the two people of Central and Western (100)
    assert deptwide.dept_wide_ids(citywide(wsd)) is None


def test_people_who_left_the_organisation_keep_nobody_out(
    sim, wsd, django_capture_on_commit_callbacks
) -> None:
    sync(wsd, django_capture_on_commit_callbacks)
    opt_out("contractor1")
    sim.sim.app(APP_KEY).directory.remove_user("contractor1")
    sim.sim.app(APP_KEY).directory.remove_user("wsd0000000")
    sync(wsd, django_capture_on_commit_callbacks)  # both are out of the directory now
    for userid in ("contractor1", "wsd0000000"):
        gone = Recipient.objects.get(dingtalk_user_id=userid)
        assert gone.subscription_state == "unsubscribed"
        assert gone.dingtalk_dept_ids == []
    assert deptwide.dept_wide_ids(citywide(wsd)) == [1]


def test_an_erasure_since_the_last_sync_leaves_a_department_unknown(
    wsd, django_capture_on_commit_callbacks
) -> None:
    sync(wsd, django_capture_on_commit_callbacks)
    person = Recipient.objects.get(dingtalk_user_id="shelter1")
    recipient_erase(actor=None, recipient=person)
    assert deptwide.dept_wide_ids(citywide(wsd)) is None
    # The next sync finds the person in the directory again (a new, subscribed recipient), so
    # where everyone sits is known again. (If the sync stops re-creating erased people, an
    # erased person still in DingTalk would sit in an unknown department: revisit deptwide.)
    sync(wsd, django_capture_on_commit_callbacks)
    assert Recipient.objects.filter(dingtalk_user_id="shelter1", erased_at__isnull=True).exists()
    assert deptwide.dept_wide_ids(citywide(wsd)) == [1]


def test_audience_members_without_departments_cannot_be_reached_by_department(
    wsd, django_capture_on_commit_callbacks
) -> None:
    sync(wsd, django_capture_on_commit_callbacks)
    make_recipients(wsd, 1, userid_prefix="imported")  # from a file: no DingTalk departments
    assert deptwide.dept_wide_ids(citywide(wsd)) is None


def test_an_opt_out_added_since_the_sync_without_departments_could_be_anywhere(
    wsd, django_capture_on_commit_callbacks
) -> None:
    sync(wsd, django_capture_on_commit_callbacks)
    make_recipients(wsd, 1, userid_prefix="optout")
    Recipient.objects.filter(dingtalk_user_id__startswith="optout").update(
        subscription_state="unsubscribed"
    )
    assert deptwide.dept_wide_ids(citywide(wsd)) is None


def test_an_outsider_in_a_department_the_sync_never_saw_means_no_department_send(
    wsd, django_capture_on_commit_callbacks
) -> None:
    sync(wsd, django_capture_on_commit_callbacks)
    opt_out("contractor1")
    Recipient.objects.filter(dingtalk_user_id="contractor1").update(dingtalk_dept_ids=[999])
    assert deptwide.dept_wide_ids(citywide(wsd)) is None


def test_no_department_send_without_a_recent_sync_from_the_current_root(
    wsd, django_capture_on_commit_callbacks, settings
) -> None:
    notice = citywide(wsd)
    assert deptwide.dept_wide_ids(notice) is None  # never synced
    sync(wsd, django_capture_on_commit_callbacks)
    assert deptwide.dept_wide_ids(notice) == [1]
    synced = DirectorySettings.objects.get(department=wsd).last_synced_at
    later = synced + timedelta(seconds=settings.DELIVERY_DEPT_WIDE_MAX_SYNC_AGE_S + 1)
    assert deptwide.dept_wide_plan(notice, now=later) is None
    DirectorySettings.objects.filter(department=wsd).update(root_dept_id=SHELTER)
    assert deptwide.dept_wide_ids(notice) is None
    assert deptwide.load_tree(wsd) is None


def test_only_untracked_citywide_notices_without_confirmation_qualify(
    wsd, django_capture_on_commit_callbacks
) -> None:
    sync(wsd, django_capture_on_commit_callbacks)
    assert deptwide.dept_wide_ids(make_notice(wsd, tier=Tier.TARGETED)) is None
    assert deptwide.dept_wide_ids(make_notice(wsd, tier=Tier.CLOSED_LOOP)) is None
    confirm = make_notice(wsd, tier=Tier.CITYWIDE, requires_confirmation=True)
    assert deptwide.dept_wide_ids(confirm) is None


def test_calls_stay_within_the_reach_of_one_call(wsd, django_capture_on_commit_callbacks) -> None:
    sync(wsd, django_capture_on_commit_callbacks)
    notice = citywide(wsd)
    # Each district reaches 4 people (2 + 2 volunteers), the shelter team 2, contractors 1.
    plan = deptwide.dept_wide_plan(notice, max_reach=8)
    assert plan is not None
    assert all(g.size <= 8 for g in plan.groups)
    assert sorted(plan.dept_ids) == sorted([*DISTRICTS, SHELTER, CONTRACTORS])
    assert plan.size == PEOPLE
    assert len(plan.groups) == 10  # 18 x 4 + 2 + 1 = 75 people, at most 8 a call
    # One department alone reaching more than a call may: no department-wide send.
    assert deptwide.dept_wide_plan(notice, max_reach=3) is None


def test_the_tree_finds_the_chosen_department_that_covers_a_person() -> None:
    tree = deptwide.DeptTree.from_json(
        {"root": 1, "parents": {"100": 1, "200": 100, "900": 1, "901": 900}}
    )
    assert tree is not None
    assert list(tree.ancestors(901)) == [901, 900, 1]
    assert tree.covering([901], {900, 100}) == 900
    assert tree.covering([200, 901], {100}) == 100
    assert tree.covering([999], {1}) is None  # a department the sync never saw
    assert deptwide.DeptTree.from_json({}) is None


def test_the_snapshot_can_tell_which_batch_reaches_a_person(
    wsd, django_capture_on_commit_callbacks
) -> None:
    sync(wsd, django_capture_on_commit_callbacks)
    assign = deptwide.batch_assigner(wsd, [(11, [100, 101]), (12, [SHELTER])])
    assert assign([200]) == 11  # Central and Western volunteers, below district 100
    assert assign([DRIVERS]) == 12
    assert assign([CONTRACTORS]) is None  # not in the plan: the snapshot sends by user id
    assert assign([]) is None


# --- the engine: plan_notice sends department-wide --------------------------------------------


def roundtrip(*args):
    return json.loads(json.dumps(list(args)))


def audience_ids(department) -> list[str]:
    return list(
        Recipient.objects.filter(deptwide.AUDIENCE, department=department).values_list(
            "dingtalk_user_id", flat=True
        )
    )


def inbox_counts(sim, userids) -> Counter[int]:
    sim.sim.advance(5)
    return Counter(len(sim.sim.inbox(userid, APP_KEY)) for userid in userids)


def test_a_citywide_notice_that_maps_onto_departments_goes_out_by_department_once(
    sim, wsd, django_capture_on_commit_callbacks
) -> None:
    sync(wsd, django_capture_on_commit_callbacks)
    opt_out("contractor1")  # the root holds someone outside the audience: no to_all_user
    notice = citywide(wsd)
    tasks.plan_notice_task.delay(*roundtrip(notice.pk))
    tasks.plan_notice_task.delay(*roundtrip(notice.pk))  # ran twice
    plan = DeliveryPlan.objects.get(notice=notice)
    assert plan.strategy == "dept_wide"
    assert plan.status == PlanStatus.DONE
    assert plan.planned == PEOPLE - 1
    batches = list(Batch.objects.filter(dispatch__plan=plan))
    assert len(batches) == 1  # 19 departments and 74 people fit one call
    (batch,) = batches
    assert sorted(batch.dept_ids) == sorted([*DISTRICTS, SHELTER])
    assert (batch.userids, batch.to_all, batch.status) == ([], False, BatchStatus.ACCEPTED)
    assert sim.sim.counters()["calls"]["asyncsend_v2"] == 1
    # Its reach is the chosen departments' members as the directory sync counted them, which
    # is what DingTalk's task reached.
    assert plan.reach_scope == "departments"
    assert plan.reach == sim.sim.task(batch.task_id).total_recipients == PEOPLE - 1
    # Every member of the audience got it exactly once; nobody outside it got it.
    audience = audience_ids(wsd)
    assert len(audience) == PEOPLE - 1
    assert inbox_counts(sim, audience) == Counter({1: PEOPLE - 1})
    assert sim.sim.inbox("contractor1", APP_KEY) == []
    people = Delivery.objects.filter(plan=plan)
    assert set(people.values_list("dingtalk_user_id", flat=True)) == set(audience)
    assert set(people.annotate(now=effective_state()).values_list("now", "batch_id")) == {
        (DeliveryState.ACCEPTED, batch.pk)
    }
    notice.refresh_from_db()
    assert notice.status == Status.SENT
    # Its receipts are DingTalk's progress of the task (no per-person result for a dept send).
    Batch.objects.filter(pk=batch.pk).update(next_poll_at=timezone.now())
    assert receipts.batch_poll_receipts(batch.pk) == "done"
    assert sim.sim.counters()["calls"].get("getsendresult", 0) == 0
    assert tasks.send_batches_task.delay(*roundtrip([batch.pk])).get()["skipped"] == 1


def test_once_todays_organisation_wide_sends_are_used_the_whole_root_goes_by_department(
    sim, wsd, django_capture_on_commit_callbacks
) -> None:
    sync(wsd, django_capture_on_commit_callbacks)
    for n in range(3):
        planner.plan_notice(make_notice(wsd, title=f"Heat warning {n}").pk)
    assert quota.org_wide_sends_today(wsd) == 3
    notice = make_notice(wsd, title="Heat warning 4")
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    assert plan.strategy == "dept_wide"
    assert Batch.objects.get(dispatch__plan=plan).dept_ids == [1]
    assert inbox_counts(sim, audience_ids(wsd)) == Counter({4: PEOPLE})
    assert sim.sim.counters()["forbidden_total"] == 0


def test_a_directory_change_between_planning_and_sending_falls_back_to_user_batches(
    sim, wsd, django_capture_on_commit_callbacks
) -> None:
    sync(wsd, django_capture_on_commit_callbacks)
    opt_out("contractor1")
    notice = citywide(wsd)
    plan = planner.plan_start(notice.pk)
    assert plan is not None
    assert plan.strategy == "dept_wide"
    # Before any batch exists, someone in Central and Western opts out: the district can no
    # longer be sent to as a whole, and no department layout covers the audience exactly.
    opt_out("wsd0000000")
    planner.plan_notice(notice.pk)
    planner.plan_notice(notice.pk)  # ran twice
    plan.refresh_from_db()
    assert plan.strategy == "user_batches"
    assert plan.status == PlanStatus.DONE
    batches = Batch.objects.filter(dispatch__plan=plan)
    assert not any(b.dept_ids or b.to_all for b in batches)
    audience = audience_ids(wsd)
    assert len(audience) == PEOPLE - 2
    assert inbox_counts(sim, audience) == Counter({1: PEOPLE - 2})
    assert sim.sim.inbox("contractor1", APP_KEY) == []
    assert sim.sim.inbox("wsd0000000", APP_KEY) == []
    (event,) = AuditEvent.objects.filter(action="delivery.strategy_changed")
    assert event.target_id == str(notice.pk)
    assert event.actor is None
    assert (event.data["from"], event.data["to"]) == ("dept_wide", "user_batches")


def test_someone_no_department_batch_reaches_still_gets_a_user_batch(
    sim, wsd, django_capture_on_commit_callbacks
) -> None:
    sync(wsd, django_capture_on_commit_callbacks)
    opt_out("contractor1")
    notice = citywide(wsd)
    plan = planner.plan_start(notice.pk)
    assert plan is not None
    dept_batches = planner.plan_dept_batches(plan, notice)
    assert planner.plan_dept_batches(plan, notice) == dept_batches  # ran twice: nothing new
    # After the plan, a new contractor joins DingTalk and subscribes: the contractors'
    # department is not in the plan (contractor1 opted out), so no department batch reaches them.
    newcomer = sim.sim.app(APP_KEY).directory.new_user(dept_id=CONTRACTORS)
    make_recipients(wsd, 1, start=int(newcomer.userid[3:]), userid_prefix="wsd", languages=("en",))
    Recipient.objects.filter(dingtalk_user_id=newcomer.userid).update(
        dingtalk_dept_ids=[CONTRACTORS]
    )
    # The snapshot runs before the department batch is sent: their rows wait in the queue.
    batch_ids, finished = planner.plan_snapshot_chunk(plan.pk)
    assert finished
    (user_batch,) = Batch.objects.filter(pk__in=batch_ids)
    assert user_batch.userids == [newcomer.userid]
    people = Delivery.objects.filter(plan=plan)
    assert people.count() == PEOPLE
    assert set(
        people.exclude(dingtalk_user_id=newcomer.userid).values_list("batch_id", "state")
    ) == {(dept_batches[0].pk, DeliveryState.QUEUED)}
    report = sender.batches_send([*[b.pk for b in dept_batches], *batch_ids])
    assert report.sent == 2
    assert set(people.annotate(now=effective_state()).values_list("now", flat=True)) == {
        DeliveryState.ACCEPTED
    }
    planner.plan_notice(notice.pk)  # ran again: nothing more goes out
    plan.refresh_from_db()
    assert plan.status == PlanStatus.DONE
    assert inbox_counts(sim, [*audience_ids(wsd)]) == Counter({1: PEOPLE})
    assert sim.sim.inbox("contractor1", APP_KEY) == []
    assert sim.sim.counters()["calls"]["asyncsend_v2"] == 2


def test_a_file_notice_sent_by_department_carries_its_text_card_too(
    sim, wsd, django_capture_on_commit_callbacks
) -> None:
    sync(wsd, django_capture_on_commit_callbacks)
    opt_out("contractor1")
    item = notice_attachments.attachment_upload(
        actor=None,
        department=wsd,
        media_type="file",
        upload=SimpleUploadedFile("shelters.pdf", b"%PDF-1.4 shelters " + b"0" * 100),
        duration_s=None,
    )
    notice = citywide(wsd)
    Notice.objects.filter(pk=notice.pk).update(kind="file", attachment=item)
    seal_approved(Notice.objects.get(pk=notice.pk))  # approved as it now stands
    planner.plan_notice(notice.pk)
    planner.plan_notice(notice.pk)  # ran twice
    plan = DeliveryPlan.objects.get(notice=notice)
    assert plan.strategy == "dept_wide"
    media_batch, card_batch = Batch.objects.filter(dispatch__plan=plan).order_by("dispatch_id")
    assert (media_batch.dispatch.language, card_batch.dispatch.language) == ("both", "both+t")
    assert media_batch.dept_ids == card_batch.dept_ids
    assert {media_batch.status, card_batch.status} == {BatchStatus.ACCEPTED}
    audience = audience_ids(wsd)
    assert inbox_counts(sim, audience) == Counter({2: PEOPLE - 1})
    for userid in audience[:5]:
        kinds = sorted(entry["msg"]["msgtype"] for entry in sim.sim.inbox(userid, APP_KEY))
        assert kinds == ["file", "markdown"]
    assert sim.sim.inbox("contractor1", APP_KEY) == []
    assert set(Delivery.objects.filter(plan=plan).values_list("batch_id", flat=True)) == {
        media_batch.pk
    }
