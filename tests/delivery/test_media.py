"""Image, file and voice notices carry their media: uploaded once through the department's app,
re-uploaded when old, and sent as the real DingTalk message type (checked in the simulator)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone, translation

from audit.models import AuditEvent
from common.errors import ApplicationError
from delivery import media, messages, quota, tasks
from delivery.models import Batch, Delivery, DeliveryPlan, PauseCode, PlanStatus
from delivery.services import lifecycle, planner, sender, sweeper
from delivery.testing import (
    connect_demo_app,
    count_directory,
    make_notice,
    make_recipients,
    stopped_clock_simulator,
)
from dingtalk.errors import ServerError
from notices import approval as notice_approval
from notices import attachments as notice_attachments
from notices.models import Attachment, Notice, Status, Tier
from notices.testing import (
    current_code,
    everyone_segment,
    seal_approved,
    submitted_notice,
    targeted_fields,
)

PDF = b"%PDF-1.4 typhoon shelters " + b"0" * 200
PNG = b"\x89PNG" + b"0" * 200
MP3 = b"ID3" + b"0" * 200


def roundtrip(*args):
    return json.loads(json.dumps(list(args)))


@pytest.fixture
def sim(settings):
    with stopped_clock_simulator(settings, directory_size=400) as dt:
        yield dt


@pytest.fixture
def wsd(cast_a, sim):
    return connect_demo_app(cast_a.department, sim, "WSD")


def attachment(department, kind: str, name: str, content: bytes, duration_s=None) -> Attachment:
    return notice_attachments.attachment_upload(
        actor=None,
        department=department,
        media_type=kind,
        upload=SimpleUploadedFile(name, content),
        duration_s=duration_s,
    )


def media_notice(department, kind: str, item: Attachment, **options) -> Notice:
    notice = make_notice(department, **options)
    Notice.objects.filter(pk=notice.pk).update(kind=kind, attachment=item)
    notice.refresh_from_db()
    return seal_approved(notice)  # approved as it now stands


def file_sent_once(department, people: int) -> Attachment:
    """A file notice sent to ``people`` English readers: its attachment, with DingTalk's id."""
    make_recipients(department, people, languages=("en",))
    item = attachment(department, "file", "shelters.pdf", PDF)
    planner.plan_notice(media_notice(department, "file", item, tier=Tier.TARGETED).pk)
    item.refresh_from_db()
    return item


def uploads(sim) -> int:
    return int(sim.sim.counters()["calls"].get("media_upload", 0))


def by_type(msgs: list[dict]) -> list[dict]:
    return sorted(msgs, key=lambda msg: msg["msgtype"])


def received(sim, userid: str) -> list[dict]:
    sim.sim.advance(5)
    return [entry["msg"] for entry in sim.sim.inbox(userid, "ding-demo-wsd")]


def test_an_approved_file_notice_reaches_everyone_as_a_file_message_uploaded_once(
    sim, wsd, cast_a, django_capture_on_commit_callbacks
) -> None:
    make_recipients(wsd, 150)
    item = attachment(wsd, "file", "shelters.pdf", PDF)
    notice = submitted_notice(
        cast_a.pr_officer,
        wsd,
        **targeted_fields(everyone_segment(wsd), kind="file", attachment=item),
    )
    with django_capture_on_commit_callbacks(execute=True):
        notice_approval.notice_approve(
            actor=cast_a.supervisor,
            notice=notice,
            version_hash=notice.version_hash,
            totp_token=current_code(cast_a.supervisor),
        )
    tasks.plan_notice_task.delay(*roundtrip(notice.pk))  # the planner ran twice
    item.refresh_from_db()
    assert item.dingtalk_media_id.startswith("@")
    assert item.dingtalk_media_uploaded_at is not None
    assert uploads(sim) == 1
    assert item.dingtalk_media_id in sim.sim.app("ding-demo-wsd").media
    plan = DeliveryPlan.objects.get(notice=notice)
    assert plan.status == PlanStatus.DONE
    notice.refresh_from_db()
    assert notice.status == Status.SENT
    expected = {"msgtype": "file", "file": {"media_id": item.dingtalk_media_id}}
    cards = {d.language: d.message for d in plan.dispatches.filter(language__endswith="+t")}
    assert set(cards) == {"en+t", "zh+t"}
    people = list(
        Delivery.objects.filter(plan=plan).values_list("dingtalk_user_id", "dispatch__language")
    )
    assert len(people) == 150
    # The file, and beside it the text card in the person's language: each exactly once.
    for userid, language in people:
        assert by_type(received(sim, userid)) == [expected, cards[f"{language}+t"]]
    event = AuditEvent.objects.get(action="delivery.media_uploaded")
    assert event.target_id == str(notice.pk)
    assert event.data["media_id"] == item.dingtalk_media_id
    assert event.data["sha256"] == item.sha256
    # The pre-flight staff saw counted the file's companion cards and its upload: at least the
    # calls made (without the cards it would say 3 for these 4).
    from notices.preflight import preflight

    sends = int(sim.sim.counters()["calls"]["asyncsend_v2"])
    assert sends == Batch.objects.filter(dispatch__plan=plan).count() == 4
    figures = preflight(
        department=wsd,
        tier=notice.tier,
        segments=notice.segments.all(),
        languages=2,
        requires_confirmation=notice.requires_confirmation,
        kind=notice.kind,
        fresh=True,
    )
    assert sends <= figures["calls"] <= 2 * sends
    # Every call: the sends and cards, 7 polls each, one upload, the submission's alert.
    alerts = figures["forecast"]["approver_alerts"]
    assert figures["calls_total"] == sends * 8 + 1 + alerts


def test_an_image_notice_is_an_oa_card_with_the_picture_and_the_text(sim, wsd, client) -> None:
    make_recipients(wsd, 30, languages=("en", "zh-hant"))
    item = attachment(wsd, "image", "rain-map.png", PNG)
    notice = media_notice(wsd, "image", item, tier=Tier.TARGETED, title="Flooding in Sha Tin")
    planner.plan_notice(notice.pk)
    item.refresh_from_db()
    plan = DeliveryPlan.objects.get(notice=notice)
    cards = {d.language: d.message for d in plan.dispatches.all()}
    assert set(cards) == {"en", "zh"}
    for language, card in cards.items():
        assert card["msgtype"] == "oa"
        body = card["oa"]["body"]
        assert body["image"] == item.dingtalk_media_id
        assert body["title"] == (notice.title_en if language == "en" else notice.title_zh)
        assert body["content"] == (notice.body_en if language == "en" else notice.body_zh)
    en_person = Delivery.objects.filter(plan=plan, dispatch__language="en").first()
    assert received(sim, en_person.dingtalk_user_id) == [cards["en"]]
    # Tapping the card opens the whole text on the public notice page, without a login.
    page = cards["en"]["oa"]["message_url"]
    path = page.split("127.0.0.1:8000", 1)[1]
    response = client.get(path)
    assert response.status_code == 200
    assert notice.body_en in response.content.decode()
    assert notice.body_zh in response.content.decode()
    assert client.get(reverse("delivery:notice-page", args=["forged"])).status_code == 404
    DeliveryPlan.objects.filter(pk=plan.pk).update(status=PlanStatus.RECALLED)
    assert "withdrew" in client.get(path).content.decode()


def test_an_image_notice_that_needs_confirmation_links_each_person_to_their_page(sim, wsd) -> None:
    make_recipients(wsd, 3, languages=("en",))
    item = attachment(wsd, "image", "drill.png", PNG)
    notice = media_notice(
        wsd,
        "image",
        item,
        tier=Tier.CLOSED_LOOP,
        title="Evacuation drill",
        requires_confirmation=True,
    )
    planner.plan_notice(notice.pk)
    for person in Delivery.objects.filter(plan__notice=notice):
        (card,) = received(sim, person.dingtalk_user_id)
        # The link is the person's signed confirmation page (its signature carries a time).
        url = card["oa"]["message_url"]
        assert url.startswith(sender.confirm_url(person.pk).rsplit("/", 2)[0] + "/")
        assert messages.delivery_from_token(url.rstrip("/").rsplit("/", 1)[1]) == person.pk
        assert card["oa"]["body"]["content"].startswith("Tap to read and confirm.")


def test_a_voice_notice_sends_the_clip_with_its_length(sim, wsd) -> None:
    make_recipients(wsd, 5, languages=("zh-hant",))
    item = attachment(wsd, "voice", "announcement.mp3", MP3, duration_s=42)
    notice = media_notice(wsd, "voice", item, tier=Tier.TARGETED)
    planner.plan_notice(notice.pk)
    item.refresh_from_db()
    person = Delivery.objects.filter(plan__notice=notice).first()
    card = messages.companion_message(notice, "zh")
    assert card is not None
    assert "42 秒語音訊息" in card["markdown"]["text"]
    assert by_type(received(sim, person.dingtalk_user_id)) == [
        card,
        {"msgtype": "voice", "voice": {"media_id": item.dingtalk_media_id, "duration": "42"}},
    ]


def test_an_old_media_id_is_uploaded_again_before_the_next_notice_uses_it(sim, wsd) -> None:
    item = file_sent_once(wsd, 10)
    old_id = item.dingtalk_media_id
    # A second notice within the media's lifetime reuses the id.
    second = media_notice(wsd, "file", item, tier=Tier.TARGETED, title="Shelters again")
    assert media.ensure_media(second.pk) == media.StoredMedia(
        old_id, item.dingtalk_media_uploaded_at, uploaded=False
    )
    assert uploads(sim) == 1
    # Three days on, the id counts as expired: the planner uploads the file again first.
    long_ago = timezone.now() - media.max_age() - timedelta(minutes=1)
    Attachment.objects.filter(pk=item.pk).update(dingtalk_media_uploaded_at=long_ago)
    planner.plan_notice(second.pk)
    item.refresh_from_db()
    assert uploads(sim) == 2
    assert item.dingtalk_media_id != old_id
    assert item.dingtalk_media_uploaded_at > long_ago
    dispatch = DeliveryPlan.objects.get(notice=second).dispatches.get(language="en")
    assert dispatch.message == {"msgtype": "file", "file": {"media_id": item.dingtalk_media_id}}
    assert set(Batch.objects.filter(dispatch=dispatch).values_list("status", flat=True)) == {
        "accepted"
    }
    replaced = AuditEvent.objects.filter(action="delivery.media_uploaded").order_by("sequence")
    assert [e.data["replaced"] for e in replaced] == [False, True]


def test_a_transient_upload_error_raises_for_a_retry_and_nothing_is_sent_meanwhile(
    sim, wsd
) -> None:
    make_recipients(wsd, 10, languages=("en",))
    item = attachment(wsd, "file", "shelters.pdf", PDF)
    notice = media_notice(wsd, "file", item, tier=Tier.TARGETED)
    sim.sim.inject("media_upload", "http_500")
    with pytest.raises(ServerError):
        planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    assert plan.status == PlanStatus.SENDING
    assert not Batch.objects.filter(dispatch__plan=plan).exists()
    # The sweeper re-plans a plan whose snapshot has not finished: the retry goes through.
    planner.plan_notice(notice.pk)
    plan.refresh_from_db()
    assert plan.status == PlanStatus.DONE
    assert uploads(sim) == 2  # the failed call and the good one


def test_wrong_credentials_pause_the_plan_with_a_clear_reason_and_the_resume_uploads(
    sim, wsd, tmp_path
) -> None:
    make_recipients(wsd, 10, languages=("en",))
    item = attachment(wsd, "file", "shelters.pdf", PDF)
    notice = media_notice(wsd, "file", item, tier=Tier.TARGETED)
    good_ref = wsd.dingtalk_secret_ref
    wrong = tmp_path / "wrong-secret"
    wrong.write_text("not-the-secret")
    wsd.dingtalk_secret_ref = f"file:{wrong}"
    wsd.save()
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    notice.refresh_from_db()
    assert plan.status == PlanStatus.PAUSED
    assert plan.pause_code == "InvalidCredentials"
    assert "app key or secret" in plan.pause_reason
    assert notice.status == Status.PAUSED
    assert not Batch.objects.filter(dispatch__plan=plan).exists()
    assert uploads(sim) == 0
    wsd.dingtalk_secret_ref = good_ref
    wsd.save()
    cache.clear()
    assert sweeper.sweep()["resumed"] == 1  # the credentials work again: resumed, re-planned
    plan.refresh_from_db()
    assert plan.status == PlanStatus.DONE
    assert uploads(sim) == 1


def test_a_file_dingtalk_refuses_pauses_the_plan_and_a_missing_file_is_named(sim, wsd) -> None:
    make_recipients(wsd, 5, languages=("en",))
    item = attachment(wsd, "file", "shelters.pdf", PDF)
    notice = media_notice(wsd, "file", item, tier=Tier.TARGETED)
    sim.sim.inject("media_upload", "errcode", errcode=40006)
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    assert plan.status == PlanStatus.PAUSED
    assert plan.pause_code == "media_refused"
    assert "shelters.pdf" in plan.pause_reason
    item.file.delete(save=False)
    with pytest.raises(ApplicationError) as caught:
        media.ensure_media(notice)
    assert caught.value.code == "media_unreadable"


def test_a_media_id_dingtalk_forgot_pauses_the_send_and_the_sweeper_uploads_and_resumes(
    sim, wsd
) -> None:
    item = file_sent_once(wsd, 150)
    old_id = item.dingtalk_media_id
    # DingTalk loses the file, though the portal's copy of its id is still young.
    sim.sim.app("ding-demo-wsd").media.clear()
    second = media_notice(wsd, "file", item, tier=Tier.TARGETED, title="Shelters again")
    planner.plan_notice(second.pk)
    plan = DeliveryPlan.objects.get(notice=second)
    assert plan.status == PlanStatus.PAUSED
    assert plan.pause_code == PauseCode.MEDIA_EXPIRED
    assert not Batch.objects.filter(dispatch__plan=plan, status="failed").exists()
    second.refresh_from_db()
    assert second.status == Status.PAUSED
    assert "uploads the file again" in second.status_reason
    with translation.override("zh-hant"):
        assert plan.pause_reason_text().startswith("釘釘已不再識別附件的媒體 ID")
    assert sweeper.sweep()["resumed"] == 1
    assert sweeper.sweep()["resumed"] == 0  # ran twice
    plan.refresh_from_db()
    assert plan.status == PlanStatus.DONE
    item.refresh_from_db()
    assert item.dingtalk_media_id not in ("", old_id)
    assert uploads(sim) == 2
    new_file = {"msgtype": "file", "file": {"media_id": item.dingtalk_media_id}}
    assert plan.dispatches.get(language="en").message == new_file
    assert not Batch.objects.filter(dispatch__plan=plan).exclude(status="accepted").exists()
    for userid in Delivery.objects.filter(plan=plan).values_list("dingtalk_user_id", flat=True):
        inbox = received(sim, userid)
        # The first notice's file and card, then the second's, each exactly once.
        assert len(inbox) == 4
        assert inbox.count(new_file) == 1
    replaced = AuditEvent.objects.filter(action="delivery.media_uploaded").order_by("sequence")
    assert [e.data["replaced"] for e in replaced] == [False, True]


def test_an_upload_that_fails_after_a_forgotten_media_id_keeps_the_plan_paused_with_why(
    sim, wsd, cast_a
) -> None:
    item = file_sent_once(wsd, 5)
    sim.sim.app("ding-demo-wsd").media.clear()
    notice = media_notice(wsd, "file", item, tier=Tier.TARGETED, title="Again")
    planner.plan_notice(notice.pk)
    sim.sim.inject("media_upload", "errcode", errcode=40006)
    assert sweeper.sweep()["resumed"] == 0
    plan = DeliveryPlan.objects.get(notice=notice)
    assert plan.status == PlanStatus.PAUSED
    assert plan.pause_code == PauseCode.MEDIA_EXPIRED
    assert "shelters.pdf" in plan.pause_reason
    with pytest.raises(PermissionDenied):
        lifecycle.plan_resume(actor=cast_a.pr_officer, plan_id=plan.pk)
    # A supervisor resumes by hand: the file is uploaded again first, and DingTalk takes it.
    lifecycle.plan_resume(actor=cast_a.supervisor, plan_id=plan.pk)
    plan.refresh_from_db()
    assert plan.status == PlanStatus.DONE
    assert uploads(sim) == 3  # the first notice's, the refused one, the good one


def test_notices_without_media_upload_nothing(sim, wsd) -> None:
    make_recipients(wsd, 5, languages=("en",))
    notice = make_notice(wsd, tier=Tier.TARGETED)
    assert media.ensure_media(notice) is None
    planner.plan_notice(notice.pk)
    assert uploads(sim) == 0


@pytest.mark.django_db
def test_file_and_voice_text_travels_in_a_companion_card_and_reminders_are_text(cast_a) -> None:
    item = attachment(cast_a.department, "file", "shelters.pdf", PDF)
    Attachment.objects.filter(pk=item.pk).update(dingtalk_media_id="@lAfile")
    notice = media_notice(cast_a.department, "file", item, tier=Tier.TARGETED, title="Shelters")
    assert messages.build_message(notice, "en") == {
        "msgtype": "file",
        "file": {"media_id": "@lAfile"},
    }
    card = messages.companion_message(notice, "en")
    assert card is not None
    assert card["msgtype"] == "markdown"
    assert notice.body_en in card["markdown"]["text"]
    assert "shelters.pdf" in card["markdown"]["text"]
    both = messages.companion_message(notice, "both")
    assert both is not None
    assert notice.body_zh in both["markdown"]["text"]
    assert "附件" in both["markdown"]["text"]
    reminder = messages.build_message(notice, "zh", 1)
    assert reminder["msgtype"] == "markdown"
    assert "提示 - 請閱讀此通知。" in reminder["markdown"]["text"]
    # With a confirmation the companion carries the Confirm button, personalised per person.
    Notice.objects.filter(pk=notice.pk).update(requires_confirmation=True)
    notice.refresh_from_db()
    confirm = messages.companion_message(notice, "en")
    assert confirm is not None
    assert confirm["action_card"]["single_url"] == messages.CONFIRM_PLACEHOLDER_URL
    image = media_notice(cast_a.department, "image", item, tier=Tier.TARGETED)
    assert messages.companion_message(image, "en") is None
    assert messages.companion_message(make_notice(cast_a.department), "en") is None


@pytest.mark.django_db
def test_a_media_message_is_never_built_without_an_uploaded_id(cast_a) -> None:
    item = attachment(cast_a.department, "image", "map.png", PNG)
    notice = media_notice(cast_a.department, "image", item, tier=Tier.TARGETED)
    with pytest.raises(ApplicationError) as caught:
        messages.build_message(notice, "en")
    assert caught.value.code == "media_missing"


# --- companion cards: a file or voice notice's text goes beside its media --------------------


def test_an_organisation_wide_file_notice_sends_the_file_and_its_card_to_everyone(sim, wsd) -> None:
    make_recipients(wsd, 40)
    count_directory(wsd, sim)
    item = attachment(wsd, "file", "shelters.pdf", PDF)
    notice = media_notice(wsd, "file", item, tier=Tier.CITYWIDE, title="Shelters open")
    tasks.plan_notice_task.delay(*roundtrip(notice.pk))
    tasks.plan_notice_task.delay(*roundtrip(notice.pk))  # ran twice
    plan = DeliveryPlan.objects.get(notice=notice)
    assert plan.strategy == "org_wide"
    assert plan.status == PlanStatus.DONE
    batches = Batch.objects.filter(dispatch__plan=plan).order_by("dispatch_id")
    assert [(b.dispatch.language, b.to_all, b.size, b.status) for b in batches] == [
        ("both", True, 40, "accepted"),
        ("both+t", True, 40, "accepted"),
    ]
    assert quota.org_wide_sends_today(wsd) == 2  # DingTalk counts each to_all_user call
    card = messages.companion_message(notice, "both")
    item.refresh_from_db()
    file_message = {"msgtype": "file", "file": {"media_id": item.dingtalk_media_id}}
    for person in Delivery.objects.filter(plan=plan):
        assert person.batch_id == batches[0].pk
        assert by_type(received(sim, person.dingtalk_user_id)) == [file_message, card]


def test_a_file_notice_needs_two_organisation_wide_sends_or_goes_in_batches(sim, wsd) -> None:
    make_recipients(wsd, 20, languages=("en",))
    count_directory(wsd, sim)
    for n in range(2):
        planner.plan_notice(make_notice(wsd, title=f"Heat warning {n}").pk)
    item = attachment(wsd, "file", "shelters.pdf", PDF)
    notice = media_notice(wsd, "file", item, tier=Tier.CITYWIDE, title="Shelters open")
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    # One to_all_user call is left today, and the notice needs two: it goes by user id.
    assert plan.strategy == "user_batches"
    assert set(plan.dispatches.values_list("language", flat=True)) == {"en", "en+t"}
    assert sim.sim.counters()["forbidden_total"] == 0
    for person in Delivery.objects.filter(plan=plan):
        kinds = [m["msgtype"] for m in by_type(received(sim, person.dingtalk_user_id))]
        assert kinds == ["file", "markdown", "markdown", "markdown"]  # two heat warnings


def test_a_voice_notice_that_needs_confirmation_puts_each_persons_link_on_its_card(
    sim, wsd
) -> None:
    make_recipients(wsd, 3, languages=("en",))
    item = attachment(wsd, "voice", "drill.mp3", MP3, duration_s=12)
    notice = media_notice(
        wsd, "voice", item, tier=Tier.CLOSED_LOOP, title="Drill", requires_confirmation=True
    )
    planner.plan_notice(notice.pk)
    plan = DeliveryPlan.objects.get(notice=notice)
    assert plan.strategy == "per_person"
    assert Batch.objects.filter(dispatch__plan=plan).count() == 6
    for person in Delivery.objects.filter(plan=plan):
        voice, card = sorted(
            received(sim, person.dingtalk_user_id), key=lambda m: m["msgtype"] == "action_card"
        )
        assert voice["msgtype"] == "voice"
        # The person's signed confirmation page (its signature carries a time).
        url = card["action_card"]["single_url"]
        assert url.startswith(sender.confirm_url(person.pk).rsplit("/", 2)[0] + "/")
        assert messages.delivery_from_token(url.rstrip("/").rsplit("/", 1)[1]) == person.pk
