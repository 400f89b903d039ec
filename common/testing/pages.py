"""Every page a person reads, filled: the scenario shared by the page-wide tests.

tests/browser/test_axe_pages.py runs axe-core on each page and tests/test_zh_untranslated.py
looks for English in each page rendered in zh-Hant; both open the pages listed here. The
scenario is one department wired to the simulator with recipients, a notice sent with
confirmation (dashboard with read receipts and a held batch, outreach, receipts report, the
recipient's confirmation and notice pages), a mistyped sign-in (django-axes' lists), the second factor's pages (a code, an enrolment), a submitted notice, a segment, an import with a row
error, an integration, an audit export and a chain verification; every back-office (Django
admin) index, list, add and change page; and the error pages 400, 403, 404 and 500.

A named URL that is neither visited here nor on ``SKIPPED`` with its reason fails both tests
(``unvisited_url_names``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from axes.models import AccessAttempt
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, path, reverse
from django.utils import timezone

from accounts import services
from accounts.models import Membership, Role
from audiences import import_jobs
from audiences.models import Segment
from audiences.testing import csv_bytes, recipient_row
from audit.chain_runs import verification_run, verification_start
from audit.exports import export_start
from audit.models import AuditEvent
from audit.selectors import EventFilters
from common.testing.cast import (
    TEST_PASSWORD,
    Cast,
    give_authenticator,
    unverified_client_for,
    verified_client_for,
)
from delivery import messages as delivery_messages
from delivery.models import Batch, BatchStatus, Delivery, DeliveryPlan, OutreachStatus
from delivery.services import receipts, sweeper, uncertain
from delivery.services.outcomes import mark_unknown
from delivery.testing import connect_department, make_recipients
from dingtalk.simulator.testing import RunningSimulator, running_simulator
from integrations.services import callers
from notices import approval as notice_approval
from notices.models import Notice
from notices.testing import current_code, everyone_segment, submitted_notice, targeted_fields

# URL names not visited, and why: each is not a page a person reads.
SKIPPED: dict[str, str] = {
    "set_language": "POST only",
    "health": "JSON for the load balancer",
    "health-live": "plain text for the load balancer",
    "health-ready": "JSON for the load balancer",
    "metrics": "Prometheus text",
    "audit:export-create": "POST only",
    "audit:export-proof": "a JSON Lines download",
    "audit:chain-verify": "POST only",
    "audit:chain-progress": "JSON polled by the Chain page",
    "audit:export-progress": "JSON polled by the export page",
    "audit:export-download": "a file download",
    "receipts:export": "POST only (a file download)",
    "audiences:segment-count": "JSON polled by the segment form",
    "audiences:segment-delete": "POST only",
    "audiences:import-job-progress": "JSON polled by the import page",
    "audiences:sync": "POST only",
    "audiences:dingtalk-callback": "DingTalk's event push (JSON)",
    "audiences:venues": "JSON for the segment form's venue search",
    "notices:preview": "POST only (HTML fragment for the compose page)",
    "notices:voice": "a WAV file played by the compose and notice pages",
    "notices:submit": "POST only",
    "notices:cancel": "POST only",
    "notices:approve": "POST only",
    "notices:reject": "POST only",
    "notices:api-approve": "JSON API",
    "notices:api-reject": "JSON API",
    "delivery:dashboard-json": "JSON polled by the dashboard",
    "delivery:recall": "POST only",
    "delivery:resume": "POST only",
    "delivery:outreach-export": "a CSV download",
    "delivery:outreach-assign": "POST only",
    "delivery:outreach-close": "POST only",
    "delivery:held-resend": "POST only (the held batches are listed on the dashboard)",
    "delivery:held-close": "POST only (the held batches are listed on the dashboard)",
    "integrations:secret": "POST only (shows the new secret once, on the detail page)",
    "integrations:toggle": "POST only",
    "integrations:rotate": "POST only",
    "integrations:policy-save": "POST only",
    "integrations:recall-decide": "POST only",
    "api:trigger": "JSON API for other systems",
    "api:trigger-status": "JSON API for other systems",
    "api:cap": "XML API for other systems",
    "accounts:logout": "POST only",
    "accounts:backup-codes": "POST only (the new codes are shown once, after the home page's button)",
    "accounts:enrolment-link": "a one-time link; its page is the enrolment page (accounts:enrol)",
}


def _expect(condition: bool, failure: str) -> None:
    """Fail the test building the scenario (the pages it opens would be the wrong ones)."""
    if not condition:
        raise AssertionError(failure)


def _bad_request(request: HttpRequest) -> HttpResponse:
    raise SuspiciousOperation("a test's bad request")


def _forbidden(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied("a test's refusal")


def _server_error(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a test's server error")


class ErrorUrls:
    """The project's URLs plus three that fail on purpose (settings.ROOT_URLCONF in tests)."""

    urlpatterns = [
        path("_errors/400/", _bad_request),
        path("_errors/403/", _forbidden),
        path("_errors/500/", _server_error),
        *get_resolver().url_patterns,
    ]


ERROR_PAGES = [
    ("400", "/_errors/400/"),
    ("403", "/_errors/403/"),
    ("404", "/no-such-page/"),
    ("500", "/_errors/500/"),
]


@dataclass
class Scenario:
    cast: Cast
    superuser: User
    notices: list[Notice] = field(default_factory=list)
    pages: list[tuple[str, str, User]] = field(default_factory=list)  # (url name, path, user)
    anonymous: list[tuple[str, str]] = field(default_factory=list)  # (url name, path)
    # Pages between the password and the second factor: (url name, path, user); open them with
    # unverified_client_for(user, authenticator=False).
    pre_otp: list[tuple[str, str, User]] = field(default_factory=list)
    admin: list[tuple[str, User]] = field(default_factory=list)  # (path, user)


def portal_url_names() -> set[str]:
    """Every named URL of the portal (the back office's own names aside)."""
    names: set[str] = set()

    def walk(resolver: URLResolver, namespace: str) -> None:
        for item in resolver.url_patterns:
            if isinstance(item, URLResolver):
                inner = namespace + (f"{item.namespace}:" if item.namespace else "")
                if not inner.startswith("admin:"):
                    walk(item, inner)
            elif isinstance(item, URLPattern) and item.name:
                names.add(namespace + item.name)

    walk(get_resolver(), "")
    return names


def unvisited_url_names(scenario: Scenario) -> tuple[set[str], set[str]]:
    """(named URLs neither visited nor skipped, skipped names that no longer exist or are
    visited all the same)."""
    visited = {name for name, _url, _user in scenario.pages}
    visited |= {name for name, _url in scenario.anonymous}
    visited |= {name for name, _url, _user in scenario.pre_otp}
    names = portal_url_names()
    return names - visited - set(SKIPPED), (set(SKIPPED) - names) | (set(SKIPPED) & visited)


def admin_paths(user: User) -> list[str]:
    """The back office's index and each registered model's list, add and change pages that
    ``user`` may open (the axes lists, for one, allow no adding)."""
    request = RequestFactory().get("/admin/")
    request.user = user
    paths = [reverse("admin:index"), reverse("admin:audiences_recipient_import")]
    for model, model_admin in admin.site._registry.items():
        prefix = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        paths.append(reverse(f"{prefix}_changelist"))
        obj = model_admin.get_queryset(request).order_by("pk").first()
        if obj is not None and model_admin.has_view_or_change_permission(request, obj):
            paths.append(reverse(f"{prefix}_change", args=[obj.pk]))
        if model_admin.has_add_permission(request):
            paths.append(reverse(f"{prefix}_add"))
    return paths


def _sent_with_receipts(cast: Cast, segment: Segment, dt: RunningSimulator) -> Notice:
    """A notice sent with confirmation: a third of its people read it, one batch is held (its
    answer was lost and DingTalk's day changed since), its unconfirmed people are open for
    outreach."""
    sent = submitted_notice(
        cast.pr_officer,
        cast.department,
        **targeted_fields(segment, requires_confirmation=True),
    )
    notice_approval.notice_approve(
        actor=cast.supervisor,
        notice=sent,
        version_hash=sent.version_hash,
        totp_token=current_code(cast.supervisor),
    )
    dt.sim.advance(120)
    batches = list(Batch.objects.filter(dispatch__plan__notice=sent).order_by("seq"))
    for batch in batches:
        if batch.task_id is not None:
            for userid in batch.userids[: len(batch.userids) // 3]:
                dt.sim.mark_read(batch.task_id, userid)
        Batch.objects.filter(pk=batch.pk).update(next_poll_at=timezone.now())
        receipts.batch_poll_receipts(batch.pk)
    plan = DeliveryPlan.objects.get(notice=sent)
    Delivery.objects.filter(plan=plan).update(outreach=OutreachStatus.OPEN)
    return sent


def _held_batch(cast: Cast, segment: Segment) -> Notice:
    """A second notice whose only batch's answer was lost a day ago: held for a supervisor."""
    notice = submitted_notice(cast.pr_officer, cast.department, **targeted_fields(segment))
    # The approval sends; the batch is then taken back to "claimed" as a lost answer leaves it.
    notice_approval.notice_approve(
        actor=cast.supervisor2,  # the first supervisor's code of this half-minute is used
        notice=notice,
        version_hash=notice.version_hash,
        totp_token=current_code(cast.supervisor2),
    )
    batch = Batch.objects.filter(dispatch__plan__notice=notice).earliest("seq")
    Batch.objects.filter(pk=batch.pk).update(
        status=BatchStatus.CLAIMED, task_id=None, accepted_at=None, next_poll_at=None
    )
    mark_unknown(batch.pk, "read timeout calling asyncsend_v2")
    batch.refresh_from_db()
    _expect(batch.uncertain_since is not None, "a lost answer leaves the batch uncertain")
    first = (batch.uncertain_since or timezone.now()).astimezone(uncertain.DINGTALK_DAY_ZONE)
    sweeper.sweep(now=(first + timedelta(days=1)).replace(hour=0, minute=0, second=5))
    batch.refresh_from_db()
    _expect(batch.status == BatchStatus.HELD, f"the batch is held, not {batch.status}")
    return notice


def _filled(cast: Cast, dt: RunningSimulator) -> tuple[Scenario, dict[str, Any]]:
    wsd = connect_department(cast.department, dt.app("ding-demo-wsd"))
    make_recipients(wsd, 12, languages=("en",))
    segment = everyone_segment(wsd)
    sent = _sent_with_receipts(cast, segment, dt)
    held = _held_batch(cast, segment)
    waiting = submitted_notice(cast.pr_officer, wsd, **targeted_fields(segment))
    job = import_jobs.import_job_start(
        actor=cast.department_admin,
        department=wsd,
        data=csv_bytes([recipient_row(900), recipient_row(901, district="Nowhere")]),
        file_name="people.csv",
        file_format="csv",
    )
    integration, _secret = callers.integration_create(
        actor=cast.system_admin, department=wsd, name="Rain gauge"
    )
    export = export_start(actor=cast.auditor, filters=EventFilters(), fmt="xlsx").background
    _expect(export is not None, "the export runs in the background")
    run = verification_start(actor=cast.auditor)
    verification_run(verification_id=str(run.pk))
    event = AuditEvent.objects.filter(department=wsd).latest("sequence")
    # A mistyped sign-in: django-axes' attempt and failure lists get a row each.
    Client().post(reverse("accounts:login"), {"username": "wsd.visitor", "password": "wrong"})
    _expect(AccessAttempt.objects.filter(username="wsd.visitor").exists(), "axes saw the attempt")
    # Every back-office page, as the one person who may open them all.
    superuser = User.objects.create_superuser("root", "root@example.invalid", "x" * 20)
    Membership.objects.create(user=superuser, department=wsd, role=Role.SYSTEM_ADMIN)
    delivery = Delivery.objects.filter(plan__notice=sent).earliest("pk")
    objects: dict[str, Any] = {
        "department": wsd,
        "sent": sent,
        "held": held,
        "waiting": waiting,
        "segment": segment,
        "job": job,
        "integration": integration,
        "export": export,
        "run": run,
        "event": event,
        "delivery": delivery,
    }
    return Scenario(cast, superuser, notices=[sent, held, waiting]), objects


def _pages(cast: Cast, o: dict[str, Any]) -> list[tuple[str, str, User]]:
    code = o["department"].code
    officer, supervisor = cast.pr_officer, cast.supervisor
    dept_admin, auditor, sysadmin = cast.department_admin, cast.auditor, cast.system_admin
    sent, waiting, held = o["sent"].pk, o["waiting"].pk, o["held"].pk
    pages: list[tuple[str, tuple[Any, ...], User, str]] = [
        ("accounts:home", (), officer, ""),
        ("accounts:department-detail", (code,), supervisor, ""),
        ("accounts:department-settings", (code,), sysadmin, ""),
        ("notices:list", (), officer, ""),
        ("notices:inbox", (), supervisor, ""),
        ("notices:compose", (code,), officer, ""),
        ("notices:detail", (sent,), officer, ""),
        ("notices:detail", (waiting,), supervisor, ""),
        ("notices:edit", (waiting,), officer, ""),
        ("delivery:summary", (), officer, ""),
        ("delivery:dashboard", (sent,), officer, ""),
        ("delivery:dashboard", (held,), supervisor, ""),
        ("delivery:outreach", (sent,), officer, ""),
        ("audiences:home", (code,), dept_admin, ""),
        ("audiences:segment-create", (code,), dept_admin, ""),
        ("audiences:segment-edit", (code, o["segment"].pk), dept_admin, ""),
        ("audiences:import-job", (code, o["job"].pk), dept_admin, ""),
        ("integrations:list", (), sysadmin, ""),
        ("integrations:create", (code,), sysadmin, ""),
        ("integrations:detail", (o["integration"].pk,), sysadmin, ""),
        ("integrations:recalls", (), supervisor, ""),
        ("audit:event-list", (), auditor, ""),
        ("audit:event-detail", (o["event"].pk,), auditor, ""),
        ("audit:chain", (), auditor, f"?run={o['run'].pk}"),
        ("audit:export-detail", (o["export"].pk,), auditor, ""),
        ("audit:receipts-open", (), auditor, "?notice=nonsense"),
        ("receipts:report", (sent,), auditor, ""),
    ]
    return [(name, reverse(name, args=args) + query, user) for name, args, user, query in pages]


def _anonymous(o: dict[str, Any]) -> list[tuple[str, str]]:
    token = delivery_messages.confirm_token(o["delivery"].pk)
    notice_token = delivery_messages.notice_token(o["sent"].pk)
    return [
        ("accounts:login", reverse("accounts:login")),
        ("delivery:confirm", reverse("delivery:confirm", args=[token])),
        ("delivery:notice-page", reverse("delivery:notice-page", args=[notice_token])),
    ]


def _pre_otp(cast: Cast) -> list[tuple[str, str, User]]:
    """The second factor's pages: a code asked of someone with an authenticator (the officer),
    an authenticator to set up for a newcomer."""
    newcomer = services.staff_create(
        actor=None,
        username="wsd.newcomer",
        full_name="Newcomer WSD",
        email="wsd.newcomer@example.gov.hk",
        department=cast.department,
        role=Role.PR_OFFICER,
        password=TEST_PASSWORD,
    )
    give_authenticator(cast.pr_officer)
    return [
        ("accounts:verify", reverse("accounts:verify"), cast.pr_officer),
        ("accounts:enrol", reverse("accounts:enrol"), newcomer),
    ]


def _back_office(s: Scenario) -> None:
    """Each back-office page, opened by whoever may open it (the system administrator, else
    the superuser); every model's list must be open to one of them."""
    for user in (s.cast.system_admin, s.superuser):
        client = verified_client_for(user)
        for url in admin_paths(user):
            if url not in {u for u, _ in s.admin} and client.get(url).status_code == 200:
                s.admin.append((url, user))
    lists = {
        reverse(f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist")
        for m in admin.site._registry
    }
    _expect(lists <= {u for u, _ in s.admin}, f"{lists - {u for u, _ in s.admin}}")


def _answers(s: Scenario, settings: Any) -> None:
    """Each page answers as expected (a 404 or a redirect would check the wrong page)."""
    for name, url, user in s.pages:
        status = verified_client_for(user).get(url).status_code
        expected = 400 if name == "audit:receipts-open" else 200
        _expect(status == expected, f"{name} {url}: {status}")
    for name, url, user in s.pre_otp:
        status = unverified_client_for(user, authenticator=False).get(url).status_code
        _expect(status == 200, f"{name} {url}: {status}")
    settings.ROOT_URLCONF = ErrorUrls
    errors = verified_client_for(s.cast.pr_officer, Client(raise_request_exception=False))
    for code, url in ERROR_PAGES:
        _expect(errors.get(url).status_code == int(code), url)


@contextmanager
def page_scenario(cast: Cast, settings: Any) -> Iterator[Scenario]:
    """The scenario, with the simulator running; ``settings`` is pytest-django's fixture (the
    error pages' URLs are added to ROOT_URLCONF)."""
    with running_simulator(directory_size=200, time_scale=0, readers={"enabled": False}) as dt:
        settings.DINGTALK_BASE_URL = dt.base_url
        settings.DELIVERY_GOVERNOR_URL = "db"
        cache.clear()
        s, objects = _filled(cast, dt)
        s.pages = _pages(cast, objects)
        s.anonymous = _anonymous(objects)
        s.pre_otp = _pre_otp(cast)
        _answers(s, settings)
        _back_office(s)
        yield s
