"""Traditional Chinese is complete: the catalogue has no gap, and no page shows English to a reader
who chose 繁體中文.

Every portal page, every back-office page a role may open (index, each list, each add form, each
change form of an existing row) and the error pages are rendered in zh-Hant for a user of each
role, on a department with recipients, segments, a sent notice with receipts, a submitted
notice, templates and audit events. English words left in the text are reported by page,
except the codes and names allowed (and explained) in common/testing/zh.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from accounts.models import Department
from audiences.models import Recipient, Segment, Tag, Venue
from audiences.resources import RecipientResource
from audit.models import AuditEvent
from common.testing.cast import Cast, verified_client_for
from common.testing.zh import english_in, untranslated_entries
from delivery.models import Batch
from delivery.services import receipts
from delivery.testing import connect_department, make_notice, make_recipients, send_notice
from dingtalk.simulator.testing import running_simulator
from integrations.models import Integration
from notices.models import Notice, Tier
from notices.testing import everyone_segment, rainstorm_template, submitted_notice, targeted_fields

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hant"}


def test_zh_catalogue_has_no_untranslated_or_fuzzy_entry() -> None:
    problems = untranslated_entries()
    assert not problems, "\n".join(problems)


@pytest.fixture
def department_with_history(settings, cast_a: Cast) -> Iterator[dict[str, Notice]]:
    with running_simulator(directory_size=40, time_scale=0) as dt:
        settings.DINGTALK_BASE_URL = dt.base_url
        settings.DELIVERY_GOVERNOR_URL = "db"
        cache.clear()
        wsd = connect_department(cast_a.department, next(a for a in dt.apps if a.code == "WSD"))
        make_recipients(wsd, 30)
        sent = make_notice(wsd, tier=Tier.TARGETED, requires_confirmation=True)
        send_notice(sent.pk)
        dt.sim.advance(120)
        for batch in Batch.objects.filter(dispatch__plan__notice=sent, task_id__isnull=False):
            for userid in batch.userids[:10]:
                dt.sim.mark_read(batch.task_id, userid)
            Batch.objects.filter(pk=batch.pk).update(next_poll_at=timezone.now())
            receipts.batch_poll_receipts(batch.pk)
        rainstorm_template(wsd)
        segment = everyone_segment(wsd)
        waiting = submitted_notice(cast_a.pr_officer, wsd, **targeted_fields(segment))
        yield {"sent": sent, "waiting": waiting}


def _portal_pages(
    cast: Cast, notices: dict[str, Notice]
) -> list[tuple[str, str, tuple[object, ...]]]:
    """(role, url name, args): every page of the portal a person opens, as its main user."""
    code = cast.department.code
    sent, waiting = notices["sent"].pk, notices["waiting"].pk
    officer, supervisor, admin_, auditor = "pr_officer", "supervisor", "department_admin", "auditor"
    return [
        (officer, "accounts:home", ()),
        (officer, "accounts:department-detail", (code,)),
        (officer, "notices:list", ()),
        (officer, "notices:compose", (code,)),
        (officer, "notices:detail", (waiting,)),
        (officer, "notices:detail", (sent,)),
        (officer, "delivery:dashboard", (sent,)),
        (officer, "delivery:outreach", (sent,)),
        (officer, "notices:edit", (waiting,)),
        (officer, "audiences:home", (code,)),
        (officer, "audiences:venues", (code,)),
        (supervisor, "notices:inbox", ()),
        (supervisor, "notices:detail", (waiting,)),
        (supervisor, "delivery:summary", ()),
        (supervisor, "delivery:dashboard", (sent,)),
        (admin_, "accounts:department-settings", (code,)),
        (admin_, "audiences:home", (code,)),
        (admin_, "audiences:segment-create", (code,)),
        (admin_, "integrations:list", ()),
        (admin_, "integrations:create", (code,)),
        (admin_, "integrations:recalls", ()),
        (auditor, "audit:event-list", ()),
        (
            auditor,
            "audit:event-detail",
            (AuditEvent.objects.order_by("-pk").values_list("pk", flat=True)[0],),
        ),
        (auditor, "receipts:report", (sent,)),
        (auditor, "delivery:summary", ()),
    ]


def _admin_pages() -> list[str]:
    # The back office's own pages beside the model pages: the recipients' import.
    urls = [reverse("admin:index"), reverse("admin:audiences_recipient_import")]
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        for view in ("changelist", "add"):
            try:
                urls.append(reverse(f"admin:{info[0]}_{info[1]}_{view}"))
            except NoReverseMatch:
                continue
        row = model._default_manager.order_by("pk").first()
        if row is not None:
            urls.append(reverse(f"admin:{info[0]}_{info[1]}_change", args=[row.pk]))
    return urls


def _typed_names() -> list[str]:
    """Names people typed, shown as typed in either language."""
    names: list[str] = []
    for model in (Segment, Recipient, Tag, Venue, Integration):
        names.extend(str(n) for n in model.objects.values_list("name", flat=True))
    for user in User.objects.all():
        names.extend((user.first_name, user.last_name, user.get_full_name(), user.username))
    # A department's names are typed data; pages show the reader's one, the back office both.
    names.extend(Department.objects.values_list("name_en", flat=True))
    # The import file's column headers: codes a file must carry, listed on the import page.
    names.append(", ".join(RecipientResource().get_export_headers()))
    # The trail's snapshots: labels as they were recorded (hash-chained, never rewritten).
    for actor, target in AuditEvent.objects.values_list("actor_label", "target_label"):
        names.extend((actor, target))
    return names


@pytest.mark.django_db
def test_zh_untranslated_no_english_left_in_any_page(cast_a: Cast, department_with_history) -> None:
    findings: dict[str, list[str]] = {}
    data = _typed_names()
    notice_texts = [t for n in Notice.objects.all() for t in (n.title_en, n.body_en)]
    clients = {}
    roles = ("pr_officer", "supervisor", "department_admin", "auditor", "system_admin")
    for role in roles:
        clients[role] = verified_client_for(getattr(cast_a, role))
    for first_role, name, args in _portal_pages(cast_a, department_with_history):
        url = reverse(name, args=args)
        # The role named first, else the first role that may open the page.
        for role in (first_role, *roles):
            response = clients[role].get(url, **ZH)
            if response.status_code == 200:
                break
        assert response.status_code == 200, f"nobody may open {url}: {response.status_code}"
        english = english_in(response.content.decode(), data)
        if english:
            findings[f"{role} {url}"] = english
    for role in ("system_admin", "department_admin", "auditor"):
        client = clients[role]
        for url in _admin_pages():
            response = client.get(url, **ZH)
            if response.status_code != 200:
                continue  # a page this role may not open (403/302): another role covers it
            # The back office edits both languages of a notice: its English texts are data there.
            english = english_in(response.content.decode(), [*data, *notice_texts])
            if english:
                findings[f"{role} {url}"] = english
    # Before logging in: the login page.
    login = Client().get(reverse("accounts:login"), **ZH)
    assert login.status_code == 200
    if english := english_in(login.content.decode(), data):
        findings["anonymous /login/"] = english
    officer = clients["pr_officer"]
    for url, status in (
        ("/notices/99999999/", 404),
        (f"/departments/{cast_a.department.code}/settings/", 403),
    ):
        response = officer.get(url, **ZH)
        assert response.status_code == status
        english = english_in(response.content.decode(), data)
        if english:
            findings[f"error {status}"] = english
    report = "\n".join(
        f"{page}:\n    " + "\n    ".join(sorted(set(chunks))) for page, chunks in findings.items()
    )
    assert not findings, f"English left in {len(findings)} zh-Hant pages:\n{report}"


@pytest.mark.django_db
def test_zh_staff_messages_are_in_both_languages_with_hk_numbers(cast_a: Cast) -> None:
    """E-mails and DingTalk alerts to staff: the portal does not know their language."""
    from notices import alerts

    make_recipients(cast_a.department, 3)
    segment = everyone_segment(cast_a.department)
    notice = submitted_notice(cast_a.pr_officer, cast_a.department, **targeted_fields(segment))
    Notice.objects.filter(pk=notice.pk).update(reach=1234)
    notice.refresh_from_db()
    subject, body = alerts._email(notice, "https://portal.example/notices/inbox/")
    assert "Approval needed / 待審批" in subject
    assert "Recipients: 1,234." in body
    assert "收件人：1,234 名。" in body  # noqa: RUF001
    assert "沙田暫停供水" in body
    card = alerts._message(notice, "https://portal.example/notices/inbox/")
    assert "1,234 名收件人 · [審閱]" in card["markdown"]["text"]


def test_zh_templates_fill_chinese_text_with_chinese_dates() -> None:
    from notices.models import NoticeTemplate
    from notices.templating import template_fill

    template = NoticeTemplate(
        name="Outage",
        tier=Tier.TARGETED,
        kind="text",
        title_en="Outage on {date}",
        title_zh="{date}停水",
        body_en="From {time} on {date}.",
        body_zh="{date}{time}起停水。",
        buttons=[],
    )
    values = {"date": "2026-12-05", "date_en": "5 December 2026", "date_zh": "2026年12月5日"}
    fields = template_fill(template, {**values, "time": "23:00"})
    assert fields["title_zh"] == "2026年12月5日停水"
    assert fields["body_zh"] == "2026年12月5日23:00起停水。"
    assert fields["body_en"] == "From 23:00 on 5 December 2026."
    # Without per-language values, both take the shared one.
    assert template_fill(template, {"date": "2026-12-05", "time": "23:00"})["title_zh"] == (
        "2026-12-05停水"
    )


def test_zh_untranslated_checker_catches_english_and_lets_codes_and_names_through() -> None:
    page = (
        '<html lang="zh-Hant-HK"><body><p>策略 user_batches</p><span class="badge">Read: 20</span>'
        '<img alt="Search" src="x.svg"><p lang="en">Water suspension</p><p>wsd.officer · WSD</p>'
        "<p>notices.approved · 3fa9c2d1e0b7</p><script>var english = 'yes';</script></body></html>"
    )
    assert english_in(page) == ["策略 user_batches", "Read: 20", "Search"]
    assert english_in("<p>Chan Tai Man 已確認</p>", ["Chan Tai Man"]) == []
