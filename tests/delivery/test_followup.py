"""Reminders, confirmations, recall and the outreach list."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone, translation

from audit.models import AuditEvent
from common.errors import ApplicationError
from delivery import messages, tasks
from delivery.governor import content_fingerprint
from delivery.models import (
    Batch,
    BatchStatus,
    Delivery,
    DeliveryPlan,
    DeliveryState,
    OutreachStatus,
    PlanStatus,
    effective_state,
)
from delivery.selectors import plan_figures
from delivery.services import followup, planner, receipts
from delivery.testing import (
    connect_demo_app,
    make_notice,
    make_recipients,
    stopped_clock_simulator,
)
from notices import attachments as notice_attachments
from notices.models import Notice, Status, Tier
from notices.testing import seal_approved


@pytest.fixture
def sim(settings):
    with stopped_clock_simulator(settings, directory_size=200, readers={"enabled": False}) as dt:
        yield dt


@pytest.fixture
def wsd(cast_a, sim):
    return connect_demo_app(cast_a.department, sim, "WSD")


def actions(notice):
    return list(
        AuditEvent.objects.filter(target_id=str(notice.pk)).values_list("action", flat=True)
    )


@pytest.mark.django_db
def test_reminders_are_worded_differently_then_the_silent_go_to_outreach(sim, wsd) -> None:
    make_recipients(wsd, 30, languages=("en",))
    notice = make_notice(
        wsd, tier=Tier.CLOSED_LOOP, max_reminders=2, remind_after_minutes=30, remind_whom="unread"
    )
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    first = Batch.objects.get(dispatch__plan=plan)
    sim.sim.advance(60)
    for userid in first.userids[:10]:
        sim.sim.mark_read(first.task_id, userid)
    Batch.objects.filter(pk=first.pk).update(next_poll_at=timezone.now())
    receipts.batch_poll_receipts(first.pk)
    later = timezone.now() + timedelta(minutes=31)
    assert tasks.send_reminders_task.delay().get() == 0  # not due yet
    assert followup.reminders_due_send(now=later) == 1
    assert followup.reminders_due_send(now=later) == 0  # ran twice
    hashes = set(plan.dispatches.values_list("content_hash", flat=True))
    assert len(hashes) == 2
    reminder = Batch.objects.get(dispatch__plan=plan, dispatch__round=1)
    assert len(reminder.userids) == 20
    assert set(reminder.userids).isdisjoint(first.userids[:10])
    sim.sim.advance(5)
    # DingTalk dropped nothing as duplicate content: the reminder reached the 20 unread.
    assert sim.sim.counters()["forbidden_total"] == 0
    assert Counter(len(sim.sim.inbox(u, "ding-demo-wsd")) for u in reminder.userids) == {2: 20}
    assert followup.reminders_due_send(now=later + timedelta(minutes=31)) == 1
    assert followup.reminders_due_send(now=later + timedelta(minutes=62)) == 0
    assert Delivery.objects.filter(plan=plan, outreach=OutreachStatus.OPEN).count() == 20
    assert {"delivery.reminded", "delivery.outreach_listed"} <= set(actions(notice))


def test_each_reminder_round_has_its_own_content(db, cast_a) -> None:
    notice = make_notice(cast_a.department, tier=Tier.CLOSED_LOOP)
    fingerprints = {content_fingerprint(messages.build_message(notice, "en", r)) for r in range(4)}
    assert len(fingerprints) == 4


def test_a_message_s_fixed_text_is_in_its_own_language_whatever_the_active_one(db, cast_a) -> None:
    """Reminder openers and the Confirm button come from the translation catalogue in the
    message's language ("both": English then Chinese), not in whatever language is active."""
    notice = make_notice(cast_a.department, tier=Tier.CLOSED_LOOP, requires_confirmation=True)
    with translation.override("zh-hant"):
        english = messages.build_message(notice, "en", 1)["action_card"]
    with translation.override("en"):
        chinese = messages.build_message(notice, "zh", 2)["action_card"]
        both = messages.build_message(notice, "both", 1)["action_card"]
    assert english["single_title"] == "Confirm"
    assert english["markdown"].startswith("**Reminder: please read this notice.** (1)")
    assert chinese["single_title"] == "確認"
    assert chinese["markdown"].startswith("**第二次提示 - 此通知仍需要您處理。** (2)")
    assert both["single_title"] == "Confirm 確認"
    assert both["markdown"].startswith(
        "**Reminder: please read this notice. 提示 - 請閱讀此通知。** (1)"
    )


@pytest.mark.django_db
def test_a_personal_link_confirms_once_with_the_location(sim, wsd, client) -> None:
    make_recipients(wsd, 3, languages=("en",))
    notice = make_notice(wsd, tier=Tier.CLOSED_LOOP, requires_confirmation=True)
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    assert plan.strategy == "per_person"
    batches = Batch.objects.filter(dispatch__plan=plan)
    assert batches.count() == 3
    sim.sim.advance(5)
    person = Delivery.objects.filter(plan=plan).first()
    inbox = sim.sim.inbox(person.dingtalk_user_id, "ding-demo-wsd")
    url = inbox[0]["msg"]["action_card"]["single_url"]
    token = url.rstrip("/").rsplit("/", 1)[-1]
    assert url.startswith("http://127.0.0.1:8000/delivery/c/")
    assert messages.delivery_from_token(token) == person.pk
    page = client.get(f"/delivery/c/{token}/")
    assert page.status_code == 200
    assert b"I confirm" in page.content
    response = client.post(f"/delivery/c/{token}/", {"latitude": "22.28", "longitude": "114.16"})
    assert response.status_code == 200
    assert b"confirmation was recorded" in response.content
    client.post(f"/delivery/c/{token}/", {})
    person.refresh_from_db()
    assert person.confirmed_at is not None
    assert person.latitude == pytest.approx(22.28)
    assert actions(notice).count("delivery.confirmed") == 1
    assert client.get("/delivery/c/forged-token/").status_code == 404


@pytest.mark.django_db
def test_a_supervisor_recalls_within_24_hours_and_it_is_audited(sim, wsd, cast_a) -> None:
    make_recipients(wsd, 120, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)
    with pytest.raises(PermissionDenied):
        followup.notice_recall(actor=cast_a.pr_officer, notice=notice, reason="wrong")
    plan = followup.notice_recall(actor=cast_a.supervisor, notice=notice, reason="Wrong district")
    assert plan.status == PlanStatus.RECALLING
    assert followup.plan_recall_calls(plan.pk) == 2
    assert followup.plan_recall_calls(plan.pk) == 0  # ran twice
    plan.refresh_from_db()
    assert plan.status == PlanStatus.RECALLED
    notice.refresh_from_db()
    assert notice.status == Status.RECALLED
    sim.sim.advance(5)
    for batch in Batch.objects.filter(dispatch__plan=plan):
        assert sim.sim.task(batch.task_id).recalled_at is not None
    assert "delivery.recalled" in actions(notice)
    with pytest.raises(ApplicationError):
        followup.notice_recall(actor=cast_a.supervisor, notice=notice, reason="again")


def test_recall_mid_send_cancels_only_the_people_not_yet_sent(sim, wsd, cast_a) -> None:
    make_recipients(wsd, 150, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    first, second = Batch.objects.filter(dispatch__plan=plan).order_by("seq")
    # The second call has not gone out yet (as in the middle of a large send).
    Batch.objects.filter(pk=second.pk).update(
        status=BatchStatus.QUEUED, task_id=None, accepted_at=None, next_poll_at=None
    )
    assert plan_figures(plan)["accepted"] == 100
    followup.notice_recall(actor=cast_a.supervisor, notice=notice, reason="Wrong district")
    states = Counter(
        Delivery.objects.filter(plan=plan)
        .annotate(now=effective_state())
        .values_list("batch_id", "now")
    )
    assert states == {
        (first.pk, DeliveryState.ACCEPTED): 100,
        (second.pk, DeliveryState.CANCELLED): 50,
    }
    assert Batch.objects.get(pk=second.pk).status == BatchStatus.CANCELLED


@pytest.mark.django_db
def test_recall_after_24_hours_is_refused(sim, wsd, cast_a) -> None:
    make_recipients(wsd, 5, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)
    DeliveryPlan.objects.filter(notice=notice).update(
        first_accepted_at=timezone.now() - timedelta(hours=25)
    )
    with pytest.raises(ApplicationError, match="24 hours"):
        followup.notice_recall(actor=cast_a.supervisor, notice=notice, reason="late")
    assert "delivery.recall_refused" in actions(notice)


@pytest.mark.django_db
def test_outreach_cases_are_assigned_closed_and_exported_neutralised(sim, wsd, cast_a) -> None:
    make_recipients(wsd, 2, languages=("en",))
    notice = make_notice(wsd, tier=Tier.CLOSED_LOOP)
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    Delivery.objects.filter(plan=plan).update(outreach=OutreachStatus.OPEN)
    case = Delivery.objects.filter(plan=plan).first()
    case.recipient.name = '=HYPERLINK("http://evil")'
    case.recipient.save()
    followup.outreach_assign(actor=cast_a.pr_officer, delivery=case, assignee=cast_a.pr_officer)
    with pytest.raises(ApplicationError):
        followup.outreach_close(actor=cast_a.pr_officer, delivery=case, outcome=" ")
    followup.outreach_close(actor=cast_a.pr_officer, delivery=case, outcome="Phoned, confirmed")
    case.refresh_from_db()
    assert case.outreach == OutreachStatus.CLOSED
    rows = followup.outreach_rows(actor=cast_a.supervisor, plan=plan)
    names = [row[1] for row in rows[1:]]
    assert all(not str(n).startswith("=") for n in names)
    assert {
        "delivery.outreach_assigned",
        "delivery.outreach_closed",
        "delivery.outreach_exported",
    } <= set(actions(notice))
    assert json.dumps(rows)


# --- file and voice notices: the media batch and its companion card's --------------------------


def file_notice(department, **options):
    item = notice_attachments.attachment_upload(
        actor=None,
        department=department,
        media_type="file",
        upload=SimpleUploadedFile("shelters.pdf", b"%PDF-1.4 shelters " + b"0" * 100),
        duration_s=None,
    )
    notice = make_notice(department, **options)
    Notice.objects.filter(pk=notice.pk).update(kind="file", attachment=item)
    notice.refresh_from_db()
    return seal_approved(notice)  # approved as it now stands


def media_and_card(plan):
    media_batch = Batch.objects.get(dispatch__plan=plan, dispatch__language="en")
    card_batch = Batch.objects.get(dispatch__plan=plan, dispatch__language="en+t")
    return media_batch, card_batch


def poll_now(*batches) -> None:
    for batch in batches:
        Batch.objects.filter(pk=batch.pk).update(next_poll_at=timezone.now())
        receipts.batch_poll_receipts(batch.pk)


@pytest.mark.django_db
def test_reading_either_message_of_a_file_notice_counts_and_reminders_are_one_text_card(
    sim, wsd
) -> None:
    make_recipients(wsd, 30, languages=("en",))
    notice = file_notice(
        wsd, tier=Tier.TARGETED, max_reminders=1, remind_after_minutes=30, remind_whom="unread"
    )
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    assert plan.status == PlanStatus.DONE
    media_batch, card_batch = media_and_card(plan)
    assert media_batch.userids == card_batch.userids
    sim.sim.advance(60)
    # Ten open the file, ten read the card only, ten read nothing.
    for userid in media_batch.userids[:10]:
        sim.sim.mark_read(media_batch.task_id, userid)
    for userid in media_batch.userids[10:20]:
        sim.sim.mark_read(card_batch.task_id, userid)
    poll_now(media_batch, card_batch)
    people = Delivery.objects.filter(plan=plan)
    assert set(people.values_list("batch_id", flat=True)) == {media_batch.pk}
    assert Counter(people.values_list("state", flat=True)) == {"read": 20, "unread": 10}
    later = timezone.now() + timedelta(minutes=31)
    assert followup.reminders_due_send(now=later) == 1
    assert followup.reminders_due_send(now=later) == 0  # ran twice
    reminder = Batch.objects.get(dispatch__plan=plan, dispatch__round=1)
    assert reminder.dispatch.language == "en"
    assert reminder.dispatch.message["msgtype"] == "markdown"
    assert sorted(reminder.userids) == sorted(media_batch.userids[20:])
    sim.sim.advance(5)
    assert sim.sim.counters()["forbidden_total"] == 0
    for userid in media_batch.userids:
        expected = 3 if userid in reminder.userids else 2
        assert len(sim.sim.inbox(userid, "ding-demo-wsd")) == expected


@pytest.mark.django_db
def test_a_dropped_card_is_sent_again_without_touching_the_peoples_rows(sim, wsd) -> None:
    sim.sim.set_limits(recipients_per_minute=150)
    make_recipients(wsd, 100, languages=("en",))
    notice = file_notice(wsd, tier=Tier.TARGETED)
    with pytest.MonkeyPatch.context() as mp:
        # The governor would hold the card back; let it through to provoke silent drops.
        mp.setitem(django_settings.DELIVERY_LIMITS, "recipients_per_minute", 10_000)
        planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    media_batch, card_batch = media_and_card(plan)
    sim.sim.advance(120)
    poll_now(media_batch, card_batch)
    # DingTalk dropped the card for the 50 people over its 150 a minute (143103); they get it
    # in a new card batch, and everyone's row still follows the file message.
    again = Batch.objects.get(dispatch__plan=plan, dispatch__language="en+t", seq=1)
    assert again.size == 50
    assert again.status == "accepted"
    people = Delivery.objects.filter(plan=plan)
    assert set(people.values_list("batch_id", "state")) == {(media_batch.pk, "unread")}
    sim.sim.advance(5)
    assert Counter(len(sim.sim.inbox(u, "ding-demo-wsd")) for u in media_batch.userids) == {2: 100}


@pytest.mark.django_db
def test_recalling_a_file_notice_recalls_the_file_and_its_card(sim, wsd, cast_a) -> None:
    make_recipients(wsd, 120, languages=("en",))
    notice = file_notice(wsd, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)
    plan = followup.notice_recall(actor=cast_a.supervisor, notice=notice, reason="Wrong file")
    assert followup.plan_recall_calls(plan.pk) == 4  # two file batches, two card batches
    assert followup.plan_recall_calls(plan.pk) == 0  # ran twice
    plan.refresh_from_db()
    assert plan.status == PlanStatus.RECALLED
    sim.sim.advance(5)
    userids = Delivery.objects.filter(plan=plan).values_list("dingtalk_user_id", flat=True)
    for userid in userids:
        inbox = sim.sim.inbox(userid, "ding-demo-wsd")
        assert sorted(e["msg"]["msgtype"] for e in inbox) == ["file", "markdown"]
        assert all(entry["recalled"] for entry in inbox)


@pytest.mark.django_db
def test_the_outreach_list_shows_the_number_to_the_officer_who_took_the_case(
    sim, wsd, cast_a
) -> None:
    from django.urls import reverse

    from common.testing.cast import verified_client_for

    make_recipients(wsd, 2, languages=("en",))
    notice = make_notice(wsd, tier=Tier.CLOSED_LOOP)
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    Delivery.objects.filter(plan=plan).update(outreach=OutreachStatus.OPEN)
    case = Delivery.objects.filter(plan=plan).select_related("recipient").first()
    case.recipient.mobile = "+85291234567"
    case.recipient.save()
    url = reverse("delivery:outreach", args=[notice.pk])
    officer = verified_client_for(cast_a.pr_officer)
    assert "+85291234567" not in officer.get(url).content.decode()
    officer.post(reverse("delivery:outreach-assign", args=[notice.pk, case.pk]))
    page = officer.get(url).content.decode()
    assert 'href="tel:+85291234567"' in page
    # Anyone else sees the number masked.
    other = verified_client_for(cast_a.supervisor).get(url).content.decode()
    assert "+85291234567" not in other
    assert case.recipient.masked_mobile in other


@pytest.mark.django_db
def test_a_sent_notice_links_to_its_dashboard_and_a_draft_does_not(sim, wsd, cast_a) -> None:
    from django.urls import reverse

    from common.testing.cast import verified_client_for

    make_recipients(wsd, 2, languages=("en",))
    notice = make_notice(wsd)
    draft = make_notice(wsd, status=Status.DRAFT, title="Draft")
    planner.plan_notice(notice.pk)
    client = verified_client_for(cast_a.pr_officer)
    dashboard = reverse("delivery:dashboard", args=[notice.pk])
    page = client.get(reverse("notices:detail", args=[notice.pk])).content.decode()
    notice.refresh_from_db()
    assert notice.status in (Status.SENDING, Status.SENT)
    assert f'href="{dashboard}"' in page
    other = client.get(reverse("notices:detail", args=[draft.pk])).content.decode()
    assert 'id="notice-dashboard-link"' not in other
