"""The Observatory feed: a local warnsum server, the real poll task, one notice per warning state."""

from __future__ import annotations

import datetime as dt

import pytest
import requests
from django.conf import settings as django_settings
from django.utils import timezone

from audit.models import AuditEvent
from dingtalk.simulator.testing import running_simulator
from integrations.models import ObservatoryWarning, Trigger, WarningMapping
from integrations.observatory import parse_warnsum
from integrations.services import observatory_warnings, warning_mappings
from integrations.tasks import poll_warnsum_task
from integrations.testing import local_feed, warnsum_entry, warnsum_payloads
from notices.models import Notice, Status, Tier


@pytest.fixture
def rainstorm_mappings(cast_a, templates_a):
    for code, template in (
        ("WRAINA", "rainstorm-amber"),
        ("WRAINR", "rainstorm-red"),
        ("WRAINB", "rainstorm-black"),
    ):
        warning_mappings.warning_mapping_save(
            actor=cast_a.system_admin,
            mapping=WarningMapping(
                department=cast_a.department,
                code_pattern=code,
                template=templates_a[template],
                cancel_template=templates_a["rainstorm-cancelled"],
                tier=Tier.CITYWIDE,
            ),
        )


@pytest.fixture
def feed(settings):
    with local_feed() as running:
        settings.INTEGRATIONS_HKO_WARNSUM_URL = running.url
        yield running


def _poll(capture) -> int:
    with capture(execute=True):
        return poll_warnsum_task.delay().get()


@pytest.mark.django_db
def test_a_black_rainstorm_on_the_feed_prepares_the_black_notice_once(
    feed, rainstorm_mappings, django_capture_on_commit_callbacks
):
    issued = timezone.now() - dt.timedelta(minutes=2)
    feed.set(warnsum_payloads(("WRAINB", "ISSUE", issued)))
    assert _poll(django_capture_on_commit_callbacks) == 1
    notice = Notice.objects.get()
    assert notice.status == Status.SUBMITTED
    assert notice.template.code == "rainstorm-black"
    assert notice.tier == Tier.CITYWIDE
    assert timezone.localtime(issued).strftime("%H:%M") in notice.body_en
    assert "黑色暴雨警告信號" in notice.title_zh
    assert feed.requests == 2  # English and Chinese
    # The same warning seen again (every later poll): still one notice, approvers alerted once.
    assert _poll(django_capture_on_commit_callbacks) == 0
    assert _poll(django_capture_on_commit_callbacks) == 0
    assert Notice.objects.count() == 1
    assert ObservatoryWarning.objects.count() == 1
    assert AuditEvent.objects.filter(action="notices.approvers_alerted").count() == 1
    triggered = AuditEvent.objects.get(action="integrations.warning_triggered")
    assert triggered.data["code"] == "WRAINB"


@pytest.mark.django_db
def test_a_reissue_prepares_again_and_a_cancel_prepares_the_cancellation_notice(
    feed, rainstorm_mappings, django_capture_on_commit_callbacks
):
    issued = timezone.now() - dt.timedelta(minutes=30)
    feed.set(warnsum_payloads(("WRAINA", "ISSUE", issued)))
    _poll(django_capture_on_commit_callbacks)
    upgraded = timezone.now() - dt.timedelta(minutes=10)
    feed.set(warnsum_payloads(("WRAINR", "ISSUE", upgraded)))
    _poll(django_capture_on_commit_callbacks)
    reissued = timezone.now() - dt.timedelta(minutes=5)
    feed.set(warnsum_payloads(("WRAINR", "REISSUE", reissued)))
    _poll(django_capture_on_commit_callbacks)
    cancelled_at = timezone.now() - dt.timedelta(minutes=1)
    payloads = {"en": {}, "tc": {}}
    for lang in ("en", "tc"):
        statement, entry = warnsum_entry(
            "WRAINR", "CANCEL", issue_time=reissued, update_time=cancelled_at, lang=lang
        )
        payloads[lang][statement] = entry
    feed.set(payloads)
    _poll(django_capture_on_commit_callbacks)
    _poll(django_capture_on_commit_callbacks)
    codes = list(Notice.objects.order_by("pk").values_list("template__code", flat=True))
    assert codes == ["rainstorm-amber", "rainstorm-red", "rainstorm-red", "rainstorm-cancelled"]
    cancelled = Notice.objects.order_by("pk").last()
    assert timezone.localtime(cancelled_at).strftime("%H:%M") in cancelled.body_en


@pytest.mark.django_db
def test_extend_and_update_prepare_nothing_and_unmapped_warnings_are_only_recorded(
    feed, rainstorm_mappings, django_capture_on_commit_callbacks
):
    now = timezone.now()
    feed.set(warnsum_payloads(("WRAINA", "EXTEND", now), ("WTS", "ISSUE", now)))
    assert _poll(django_capture_on_commit_callbacks) == 0
    assert Notice.objects.count() == 0
    assert list(ObservatoryWarning.objects.values_list("code", flat=True)) == ["WTS"]


@pytest.mark.django_db
def test_tc8_star_matches_every_direction_and_an_exact_code_wins(
    cast_a, templates_a, django_capture_on_commit_callbacks
):
    mapping = warning_mappings.warning_mapping_save(
        actor=cast_a.system_admin,
        mapping=WarningMapping(
            department=cast_a.department,
            code_pattern="tc8*",
            template=templates_a["rainstorm-red"],
            tier=Tier.CITYWIDE,
        ),
    )
    assert mapping.code_pattern == "TC8*"
    warning_mappings.warning_mapping_save(
        actor=cast_a.system_admin,
        mapping=WarningMapping(
            department=cast_a.department,
            code_pattern="TC8NW",
            template=templates_a["rainstorm-black"],
            tier=Tier.CITYWIDE,
        ),
    )
    now = timezone.now()
    for n, code in enumerate(("TC8NE", "TC8SE", "TC8SW", "TC8NW")):
        payloads = warnsum_payloads((code, "ISSUE", now - dt.timedelta(minutes=10 - n)))
        with django_capture_on_commit_callbacks(execute=True):
            observatory_warnings.warnings_ingest(english=payloads["en"], chinese=payloads["tc"])
    codes = list(Notice.objects.order_by("pk").values_list("template__code", flat=True))
    assert codes == ["rainstorm-red", "rainstorm-red", "rainstorm-red", "rainstorm-black"]
    assert not WarningMapping(code_pattern="TC8*").matches("TC3", "WTCSGNL")


@pytest.mark.django_db
def test_each_department_gets_its_own_notice_and_the_same_state_never_two(
    cast_a, cast_b, templates_a, django_capture_on_commit_callbacks
):
    from notices.templating import templates_seed
    from notices.testing import add_recipients

    add_recipients(cast_b.department, 3)
    templates_b = {t.code: t for t in templates_seed(actor=None, department=cast_b.department)}
    for cast, templates in ((cast_a, templates_a), (cast_b, templates_b)):
        warning_mappings.warning_mapping_save(
            actor=cast.system_admin,
            mapping=WarningMapping(
                department=cast.department,
                code_pattern="WRAINB",
                template=templates["rainstorm-black"],
                tier=Tier.CITYWIDE,
            ),
        )
    payloads = warnsum_payloads(("WRAINB", "ISSUE", timezone.now()))
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            observatory_warnings.warnings_ingest(english=payloads["en"], chinese=payloads["tc"])
    assert sorted(Notice.objects.values_list("department__code", flat=True)) == ["FEHD", "WSD"]
    assert Trigger.objects.count() == 2


@pytest.mark.django_db
def test_history_is_not_news(feed, rainstorm_mappings, django_capture_on_commit_callbacks):
    feed.set(warnsum_payloads(("WRAINB", "ISSUE", timezone.now() - dt.timedelta(hours=7))))
    assert _poll(django_capture_on_commit_callbacks) == 0
    assert Notice.objects.count() == 0


@pytest.mark.django_db
def test_a_feed_that_fails_or_answers_nonsense_prepares_nothing(settings, rainstorm_mappings):
    settings.INTEGRATIONS_HKO_WARNSUM_URL = "http://127.0.0.1:9/closed"
    assert poll_warnsum_task.delay().get() == 0
    with local_feed() as feed:
        settings.INTEGRATIONS_HKO_WARNSUM_URL = feed.url
        feed.set({"en": [], "tc": []})
        assert poll_warnsum_task.delay().get() == 0
    assert Notice.objects.count() == 0


@pytest.mark.django_db
def test_a_template_that_cannot_be_filled_is_recorded_not_half_done(
    cast_a, templates_a, django_capture_on_commit_callbacks
):
    warning_mappings.warning_mapping_save(
        actor=cast_a.system_admin,
        mapping=WarningMapping(
            department=cast_a.department,
            code_pattern="WRAINB",
            template=templates_a["water-outage"],
            tier=Tier.TARGETED,
        ),
    )
    payloads = warnsum_payloads(("WRAINB", "ISSUE", timezone.now()))
    with django_capture_on_commit_callbacks(execute=True):
        assert (
            observatory_warnings.warnings_ingest(english=payloads["en"], chinese=payloads["tc"])
            == []
        )
    assert Notice.objects.count() == 0
    assert Trigger.objects.count() == 0
    failed = AuditEvent.objects.get(action="integrations.warning_failed")
    assert "area" in failed.data["reason"]


def test_the_last_tropical_cyclone_signal_lowered_reads_as_a_cancel():
    issued = "2026-09-24T11:15:00+08:00"
    english = {
        "WTCSGNL": {
            "name": "Tropical Cyclone Warning Signal",
            "code": "CANCEL",
            "actionCode": "CANCEL",
            "issueTime": issued,
            "updateTime": issued,
        }
    }
    (state,) = parse_warnsum(english, {})
    assert (state.code, state.action, state.statement) == ("WTCSGNL", "CANCEL", "WTCSGNL")
    assert WarningMapping(code_pattern="WTCSGNL").matches(state.code, state.statement)


@pytest.mark.django_db
def test_the_seed_maps_the_rainstorm_templates_once_and_keeps_edits(cast_a, templates_a):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("seed_warning_mappings", "WSD", stdout=out)
    assert "WRAINA, WRAINB, WRAINR" in out.getvalue()
    mappings = {
        m.code_pattern: m for m in WarningMapping.objects.filter(department=cast_a.department)
    }
    assert set(mappings) == {"WRAINA", "WRAINR", "WRAINB"}
    assert mappings["WRAINB"].template.code == "rainstorm-black"
    assert mappings["WRAINB"].cancel_template.code == "rainstorm-cancelled"
    mappings["WRAINB"].active = False
    warning_mappings.warning_mapping_save(actor=cast_a.system_admin, mapping=mappings["WRAINB"])
    call_command("seed_warning_mappings", stdout=StringIO())
    assert WarningMapping.objects.count() == 3
    assert not WarningMapping.objects.get(code_pattern="WRAINB").active


def test_by_default_the_feed_is_the_simulators_recording_not_the_internet() -> None:
    """make run and the tests read the simulator; only production names the Observatory."""
    assert django_settings.INTEGRATIONS_HKO_WARNSUM_URL.endswith("/_sim/hko/warnsum")
    assert "weather.gov.hk" not in django_settings.INTEGRATIONS_HKO_WARNSUM_URL


@pytest.mark.django_db
def test_a_warning_recorded_in_the_simulator_prepares_its_notice(
    settings, rainstorm_mappings, django_capture_on_commit_callbacks
):
    with running_simulator() as sim:
        settings.INTEGRATIONS_HKO_WARNSUM_URL = sim.base_url + "/_sim/hko/warnsum"
        assert _poll(django_capture_on_commit_callbacks) == 0  # nothing recorded: nothing in force
        issued = timezone.now() - dt.timedelta(minutes=2)
        recorded = warnsum_payloads(("WRAINA", "ISSUE", issued))
        answer = requests.post(sim.base_url + "/_sim/hko", json=recorded, timeout=5)
        assert answer.json() == {"ok": True}
        assert _poll(django_capture_on_commit_callbacks) == 1
        bad = requests.get(sim.base_url + "/_sim/hko/warnsum?lang=fr", timeout=5)
        assert bad.status_code == 400
    assert Notice.objects.get().template.code == "rainstorm-amber"
