"""WCAG 2.2 AA: axe-core finds no violation on any page, in English and in Traditional Chinese.

Every page means: each named URL of the portal that answers GET with HTML (a test below fails
when a new one is neither visited here nor on SKIPPED with its reason), every back-office
(Django admin) list, add and change page and its index, and the error pages 400, 403, 404
and 500. The pages are filled by one scenario: a department wired to the simulator with
recipients, a notice sent with confirmation (dashboard, outreach, receipts, the recipient's
confirmation and notice pages), a draft and a submitted notice, a segment, an import, an
integration, an audit export and a chain verification.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, path, reverse
from selenium.webdriver.common.by import By

from accounts.models import Membership, Role
from audiences import import_jobs
from audiences.testing import csv_bytes, recipient_row
from audit.chain_runs import verification_run, verification_start
from audit.exports import export_start
from audit.models import AuditEvent
from audit.selectors import EventFilters
from common.testing.cast import Cast, verified_client_for
from delivery import messages as delivery_messages
from delivery.models import Delivery, DeliveryPlan, OutreachStatus
from delivery.testing import connect_department, make_recipients
from dingtalk.simulator.testing import running_simulator
from integrations.services import callers
from notices import approval as notice_approval
from notices.testing import current_code, everyone_segment, submitted_notice, targeted_fields

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

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
    "delivery:held-resend": "POST only",
    "delivery:held-close": "POST only",
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


def _bad_request(request: HttpRequest) -> HttpResponse:
    raise SuspiciousOperation("a test's bad request")


def _forbidden(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied("a test's refusal")


def _server_error(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a test's server error")


class ErrorUrls:
    """The project's URLs plus three that fail on purpose (the error pages' test only)."""

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
    superuser: Any
    pages: list[tuple[str, str, Any]] = field(default_factory=list)  # (url name, path, user)
    anonymous: list[tuple[str, str]] = field(default_factory=list)
    admin: list[tuple[str, Any]] = field(default_factory=list)  # (path, user)


def portal_url_names() -> set[str]:
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


@pytest.fixture
def scenario(cast_a: Cast, settings) -> Iterator[Scenario]:
    with running_simulator(directory_size=200, time_scale=0, readers={"enabled": False}) as dt:
        settings.DINGTALK_BASE_URL = dt.base_url
        settings.DELIVERY_GOVERNOR_URL = "db"
        cache.clear()
        wsd = connect_department(cast_a.department, dt.app("ding-demo-wsd"))
        make_recipients(wsd, 12, languages=("en",))
        segment = everyone_segment(wsd)
        sent = submitted_notice(
            cast_a.pr_officer, wsd, **targeted_fields(segment, requires_confirmation=True)
        )
        notice_approval.notice_approve(
            actor=cast_a.supervisor,
            notice=sent,
            version_hash=sent.version_hash,
            totp_token=current_code(cast_a.supervisor),
        )
        plan = DeliveryPlan.objects.get(notice=sent)
        Delivery.objects.filter(plan=plan).update(outreach=OutreachStatus.OPEN)
        delivery = Delivery.objects.filter(plan=plan).first()
        waiting = submitted_notice(cast_a.pr_officer, wsd, **targeted_fields(segment))
        job = import_jobs.import_job_start(
            actor=cast_a.department_admin,
            department=wsd,
            data=csv_bytes([recipient_row(900), recipient_row(901, district="Nowhere")]),
            file_name="people.csv",
            file_format="csv",
        )
        integration, _secret = callers.integration_create(
            actor=cast_a.system_admin, department=wsd, name="Rain gauge"
        )
        export = export_start(actor=cast_a.auditor, filters=EventFilters(), fmt="xlsx").background
        run = verification_start(actor=cast_a.auditor)
        verification_run(verification_id=str(run.pk))
        event = AuditEvent.objects.filter(department=wsd).order_by("-sequence").first()
        assert event is not None
        assert export is not None
        code = wsd.code
        officer, supervisor = cast_a.pr_officer, cast_a.supervisor
        dept_admin, auditor = cast_a.department_admin, cast_a.auditor
        sysadmin = cast_a.system_admin
        # Every back-office page, as the one person who may open them all.
        superuser = User.objects.create_superuser("root", "root@example.invalid", "x" * 20)
        Membership.objects.create(user=superuser, department=wsd, role=Role.SYSTEM_ADMIN)
        s = Scenario(cast_a, superuser)
        s.pages = [
            ("accounts:home", reverse("accounts:home"), officer),
            (
                "accounts:department-detail",
                reverse("accounts:department-detail", args=[code]),
                supervisor,
            ),
            (
                "accounts:department-settings",
                reverse("accounts:department-settings", args=[code]),
                sysadmin,
            ),
            ("notices:list", reverse("notices:list"), officer),
            ("notices:inbox", reverse("notices:inbox"), supervisor),
            ("notices:compose", reverse("notices:compose", args=[code]), officer),
            ("notices:detail", reverse("notices:detail", args=[sent.pk]), officer),
            ("notices:detail", reverse("notices:detail", args=[waiting.pk]), supervisor),
            ("notices:edit", reverse("notices:edit", args=[waiting.pk]), officer),
            ("delivery:summary", reverse("delivery:summary"), officer),
            ("delivery:dashboard", reverse("delivery:dashboard", args=[sent.pk]), officer),
            ("delivery:outreach", reverse("delivery:outreach", args=[sent.pk]), officer),
            ("audiences:home", reverse("audiences:home", args=[code]), dept_admin),
            (
                "audiences:segment-create",
                reverse("audiences:segment-create", args=[code]),
                dept_admin,
            ),
            (
                "audiences:segment-edit",
                reverse("audiences:segment-edit", args=[code, segment.pk]),
                dept_admin,
            ),
            (
                "audiences:import-job",
                reverse("audiences:import-job", args=[code, job.pk]),
                dept_admin,
            ),
            ("integrations:list", reverse("integrations:list"), sysadmin),
            ("integrations:create", reverse("integrations:create", args=[code]), sysadmin),
            (
                "integrations:detail",
                reverse("integrations:detail", args=[integration.pk]),
                sysadmin,
            ),
            ("integrations:recalls", reverse("integrations:recalls"), supervisor),
            ("audit:event-list", reverse("audit:event-list"), auditor),
            ("audit:event-detail", reverse("audit:event-detail", args=[event.pk]), auditor),
            ("audit:chain", reverse("audit:chain") + f"?run={run.pk}", auditor),
            ("audit:export-detail", reverse("audit:export-detail", args=[export.pk]), auditor),
            ("audit:receipts-open", reverse("audit:receipts-open") + "?notice=nonsense", auditor),
            ("receipts:report", reverse("receipts:report", args=[sent.pk]), auditor),
        ]
        token = delivery_messages.confirm_token(delivery.pk)
        s.anonymous = [
            ("accounts:login", reverse("accounts:login")),
            ("accounts:verify", reverse("accounts:verify")),
            ("accounts:enrol", reverse("accounts:enrol")),
            ("delivery:confirm", reverse("delivery:confirm", args=[token])),
            (
                "delivery:notice-page",
                reverse("delivery:notice-page", args=[delivery_messages.notice_token(sent.pk)]),
            ),
        ]
        # Each page answers (a 404 or a redirect would check the wrong page).
        for name, url, user in s.pages:
            status = verified_client_for(user).get(url).status_code
            assert status == 200 or (name == "audit:receipts-open" and status == 400), (
                name,
                status,
            )
        settings.ROOT_URLCONF = ErrorUrls
        errors = verified_client_for(officer, Client(raise_request_exception=False))
        for code, url in ERROR_PAGES:
            assert errors.get(url).status_code == int(code), url
        # The back office as the system administrator and as a superuser: each page opened by
        # whoever may open it; every model's list must be open to one of them.
        for user in (sysadmin, superuser):
            back_office = verified_client_for(user)
            for url in admin_paths(user):
                if url not in {u for u, _ in s.admin} and back_office.get(url).status_code == 200:
                    s.admin.append((url, user))
        lists = {
            reverse(f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist")
            for m in admin.site._registry
        }
        assert lists <= {u for u, _ in s.admin}, lists - {u for u, _ in s.admin}
        yield s


def test_every_portal_page_is_checked_or_skipped_for_a_reason(scenario: Scenario) -> None:
    """A new page fails here until the scenario visits it (or SKIPPED gives a reason)."""
    visited = {name for name, _url, _user in scenario.pages}
    visited |= {name for name, _url in scenario.anonymous}
    missing = portal_url_names() - visited - set(SKIPPED)
    assert not missing, f"pages axe does not check: {sorted(missing)}"
    assert not set(SKIPPED) - portal_url_names(), "SKIPPED names a page that no longer exists"
    assert not set(SKIPPED) & visited


def admin_paths(user: User) -> list[str]:
    """The back office's index and each registered model's list, add and change pages that
    ``user`` may open (the axes lists, for one, allow no adding)."""
    request = RequestFactory().get("/admin/")
    request.user = user
    paths = [reverse("admin:index")]
    for model, model_admin in admin.site._registry.items():
        prefix = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        paths.append(reverse(f"{prefix}_changelist"))
        obj = model_admin.get_queryset(request).order_by("pk").first()
        if obj is not None and model_admin.has_view_or_change_permission(request, obj):
            paths.append(reverse(f"{prefix}_change", args=[obj.pk]))
        if model_admin.has_add_permission(request):
            paths.append(reverse(f"{prefix}_add"))
    return paths


@pytest.mark.parametrize("language", ["en", "zh-hant"])
def test_axe_finds_no_violation_on_any_page(
    live_server, browser, scenario, language, axe_check, browser_login
) -> None:
    failures: list[str] = []

    def check(label: str, path: str, in_language: bool = True) -> None:
        browser.get(live_server.url + path)
        if in_language:  # the page really is in the language under test
            lang = browser.find_element(By.TAG_NAME, "html").get_attribute("lang") or ""
            if not lang.lower().startswith(language[:2]):
                failures.append(f"{label} ({browser.current_url}) is in {lang!r}")
        try:
            axe_check(browser, f"{label} [{language}]")
        except AssertionError as exc:
            failures.append(str(exc))

    for name, url in scenario.anonymous:
        browser.delete_all_cookies()
        browser.get(live_server.url + "/health/live")
        browser.add_cookie({"name": "django_language", "value": language, "path": "/"})
        check(name, url)
    current = None
    for name, url, user in scenario.pages:
        if user != current:
            browser.delete_all_cookies()
            browser_login(browser, live_server.url, user, language)
            current = user
        check(name, url)
    browser.delete_all_cookies()
    browser_login(browser, live_server.url, scenario.cast.pr_officer, language)
    for code, url in ERROR_PAGES:
        check(f"error page {code}", url, in_language=False)
    current = None
    for url, user in scenario.admin:
        if user != current:
            browser.delete_all_cookies()
            browser_login(browser, live_server.url, user, language)
            current = user
        check("back office", url)
    assert not failures, "\n\n".join(failures)
