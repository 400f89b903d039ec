"""Traditional Chinese is complete: the catalogue has no gap, and no page shows English to a reader
who chose 繁體中文.

Every page is common.testing.pages' (shared with the axe test): each named URL a person reads,
filled by one scenario (a named URL neither visited nor skipped with a reason fails here too),
every back-office page each role may open, and the error pages. Each is rendered in zh-Hant
with Django's test client (no browser); English words left in the text are reported by page,
except the codes and names allowed (and explained) in common/testing/zh.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import Group, User
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Department
from audiences.models import Recipient, Segment, Tag, Venue
from audiences.resources import RecipientResource
from audit.models import AuditEvent
from common.testing.cast import Cast, unverified_client_for, verified_client_for
from common.testing.pages import (
    ERROR_PAGES,
    Scenario,
    admin_paths,
    page_scenario,
    unvisited_url_names,
)
from common.testing.zh import PO_FILES, english_in, permission_labels, untranslated_entries
from delivery.testing import make_recipients
from integrations.models import Integration
from notices.models import Notice, Tier
from notices.testing import everyone_segment, submitted_notice, targeted_fields

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hant"}


def test_zh_catalogue_has_no_untranslated_or_fuzzy_entry() -> None:
    assert [p.parents[2].name for p in PO_FILES] == ["locale", "locale_thirdparty"]
    problems = untranslated_entries()
    assert not problems, "\n".join(problems)


def test_zh_catalogue_check_reports_each_catalogues_gaps(tmp_path: Path) -> None:
    po = tmp_path / "locale_thirdparty" / "zh_Hant" / "LC_MESSAGES" / "django.po"
    po.parent.mkdir(parents=True)
    po.write_text(
        'msgid ""\nmsgstr "Language: zh_Hant\\n"\n\n'
        'msgid "access log"\nmsgstr "登入記錄"\n\n'
        '#, fuzzy\nmsgid "Path"\nmsgstr "路徑"\n\n'
        'msgid "Attempt Time"\nmsgstr ""\n',
        encoding="utf-8",
    )
    assert untranslated_entries([po]) == [
        "locale_thirdparty: fuzzy: 'Path'",
        "locale_thirdparty: untranslated: 'Attempt Time'",
    ]


def test_zh_thirdparty_catalogue_keys_are_the_libraries_english() -> None:
    """Each msgid of locale_thirdparty/ is text django-axes or django-otp has as it is installed:
    a string in its source, or a name Django derives from a django-otp model. After an upgrade
    that changed one, this names the entries to redo."""
    import gettext
    import re

    import axes
    import django_otp
    from axes.admin import AccessAttemptAdmin
    from django.forms.utils import pretty_name
    from django.utils import translation

    from config.thirdparty import PortalTOTPDeviceAdmin

    source = ""
    for package in (axes, django_otp):
        for file in Path(package.__path__[0]).rglob("*.py"):
            if "migrations" not in file.parts and "tests" not in file.parts:
                source += file.read_text(encoding="utf-8")
    source = re.sub(r"""['"]\s*\n\s*['"]""", "", source)  # strings split over lines, joined
    opts = TOTPDevice._meta
    with translation.override(None):
        derived = {str(opts.verbose_name_plural), str(PortalTOTPDeviceAdmin.search_help_text)}
        derived |= {str(f.verbose_name) for f in opts.get_fields() if hasattr(f, "verbose_name")}
        derived |= {pretty_name(name) for name in AccessAttemptAdmin.list_display}  # column titles
    mo = PO_FILES[1].with_suffix(".mo")
    with mo.open("rb") as handle:
        msgids = [m for m in gettext.GNUTranslations(handle)._catalog if m]
    assert len(msgids) > 60
    stale = [
        m
        for m in msgids
        # a Python string, or a link's text in the HTML of a format_html() (django-otp's "qrcode")
        if m not in derived and not any(q % m in source for q in ('"%s"', "'%s'", ">%s<"))
    ]
    assert not stale, f"not in the installed django-axes or django-otp: {stale}"


@pytest.fixture
def scenario(cast_a: Cast, settings: Any) -> Iterator[Scenario]:
    with page_scenario(cast_a, settings) as s:
        yield s


def _typed_names() -> list[str]:
    """Names people typed, shown as typed in either language."""
    names: list[str] = []
    for model in (Segment, Recipient, Tag, Venue, Integration):
        names.extend(str(n) for n in model.objects.values_list("name", flat=True))
    # An integration's address (a slug of its name) and its secret's last characters (random).
    for slug, hint in Integration.objects.values_list("slug", "secret_hint"):
        names.extend((slug, hint))
    for user in User.objects.all():
        names.extend((user.first_name, user.last_name, user.get_full_name(), user.username))
    # A department's names are typed data; pages show the reader's one, the back office both.
    names.extend(Department.objects.values_list("name_en", flat=True))
    # The import file's column headers: codes a file must carry, listed on the import page.
    headers = RecipientResource().get_export_headers()
    names.extend([", ".join(headers), *headers])
    # The trail's snapshots: labels as they were recorded (hash-chained, never rewritten).
    for actor, target in AuditEvent.objects.values_list("actor_label", "target_label"):
        names.extend((actor, target))
    # The back office's groups (role:<role>, or typed on its add page) and authenticators' names
    # (typed, or the name enrolment gives a new one).
    names.extend(Group.objects.values_list("name", flat=True))
    names.extend(TOTPDevice.objects.values_list("name", flat=True))
    # What django-axes stored of a sign-in attempt: the username typed (mistyped ones too), the
    # path and the form's fields (name=value, the password masked), as the request carried them.
    for stored in AccessAttempt.objects.values_list("username", "path_info", "post_data"):
        names.extend(line for value in stored if value for line in value.splitlines())
    # Permissions' names, stored in English by Django (common.testing.zh.permission_labels).
    names.extend(permission_labels())
    return names


@pytest.mark.django_db(transaction=True)
def test_zh_untranslated_no_english_left_in_any_page(scenario: Scenario) -> None:
    missing, stale = unvisited_url_names(scenario)
    assert not missing, f"pages the zh-Hant test does not render: {sorted(missing)}"
    assert not stale, f"SKIPPED names a page that no longer exists or is visited: {stale}"
    findings: dict[str, list[str]] = {}
    data = _typed_names()
    # The back office edits both languages of a notice: its English texts are data there.
    notice_texts = [t for n in Notice.objects.all() for t in (n.title_en, n.body_en)]
    clients: dict[User, Client] = {}

    def render(label: str, url: str, client: Client, status: int, typed: list[str]) -> None:
        response = client.get(url, **ZH)
        assert response.status_code == status, f"{label} {url}: {response.status_code}"
        if english := english_in(response.content.decode(), typed):
            findings[f"{label} {url}"] = english

    def client_for(user: User) -> Client:
        if user not in clients:
            clients[user] = verified_client_for(user, Client(raise_request_exception=False))
        return clients[user]

    for name, url, user in scenario.pages:
        status = 400 if name == "audit:receipts-open" else 200
        render(user.username, url, client_for(user), status, data)
    for _name, url in scenario.anonymous:
        render("anonymous", url, Client(), 200, data)
    for _name, url, user in scenario.pre_otp:
        client = unverified_client_for(user, authenticator=False)
        render(f"{user.username} (password only)", url, client, 200, data)
    for code, url in ERROR_PAGES:  # the scenario put the failing URLs in ROOT_URLCONF
        render(f"error {code}", url, client_for(scenario.cast.pr_officer), int(code), data)
    # The back office as each role opens it, the superuser's own pages (django-axes' and
    # django-otp's lists, auth groups) included: their text comes from locale_thirdparty/.
    back_office = list(scenario.admin)
    for user in (scenario.cast.department_admin, scenario.cast.auditor):
        back_office.extend((url, user) for url in admin_paths(user))
    for url, user in back_office:
        response = client_for(user).get(url, **ZH)
        if response.status_code != 200:
            continue  # a page this role may not open (403/302): another role covers it
        if english := english_in(response.content.decode(), [*data, *notice_texts]):
            findings[f"{user.username} {url}"] = english
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
    # django-axes' row titles and stored placeholders are let through; nothing else of axes' English.
    rows = [
        "修改 Access Log for wsd.officer @ 2026-12-05 17:28:10.744617+00:00 &lt;unknown&gt;",
        "Attempted Access: 2026-12-05 17:28:10.744617+00:00",
        "Failed access: user wsd.officer locked out on 2026-12-05 17:28:10+00:00 from 127.0.0.1",
    ]
    assert english_in("".join(f"<p>{row}</p>" for row in rows)) == []
    assert english_in("<p>Access Log for wsd.officer</p><p>Access logs</p>") == [
        "Access Log for wsd.officer",
        "Access logs",
    ]
