"""Fixtures: the named cast in two departments, OTP-verified clients, headless Chromium."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import translation

from common.testing.cast import Cast, make_cast, verified_client_for
from config.celery import app as celery_app


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """After every test that touched the database: each delivery plan's rollups equal a
    recount from its people (delivery.rollups.plan_drift). Every kind of state change the
    suite drives (sends, polls, reminders, confirmations, recall, erasure, retention,
    flow-control re-sends, held batches...) is checked, on SQLite and on PostgreSQL."""
    outcome = yield
    names = getattr(item, "fixturenames", ())
    uses_db = bool(set(names) & {"db", "transactional_db"}) or item.get_closest_marker("django_db")
    if outcome.excinfo is not None or not uses_db:
        return
    from delivery.models import DeliveryPlan
    from delivery.rollups import plan_drift

    drifts = {}
    for plan_id in DeliveryPlan.objects.values_list("pk", flat=True):
        drift = plan_drift(plan_id)
        if drift:
            drifts[plan_id] = drift
    assert not drifts, f"rollups differ from a recount of the people: {drifts}"


@pytest.fixture(scope="session", autouse=True)
def _celery_tasks_registered() -> None:
    """Import every app's tasks.py, as a worker does when it starts.

    Work is queued by task name (<app>/enqueue.py), and only a registered task runs eagerly
    (CELERY_TASK_ALWAYS_EAGER); an unregistered name would go to the in-memory broker instead.
    """
    celery_app.loader.import_default_modules()


@pytest.fixture(autouse=True)
def _default_language() -> Iterator[None]:
    """Each test starts in the default language: a request in zh-Hant leaves its language active
    in the thread (LocaleMiddleware does not reset it), and names that follow the reader's
    language (common.i18n) would otherwise read in Chinese in the next test."""
    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.activate(settings.LANGUAGE_CODE)


@pytest.fixture
def cast_a(db: None) -> Cast:
    """Water Supplies Department staff."""
    return make_cast("WSD", "Water Supplies Department", "水務署", 3003)


@pytest.fixture
def cast_b(db: None) -> Cast:
    """Food and Environmental Hygiene Department staff: the 'other department'."""
    return make_cast("FEHD", "Food and Environmental Hygiene Department", "食物環境衞生署", 3002)


@pytest.fixture
def verified_client() -> Callable[[User], Client]:
    return verified_client_for


@pytest.fixture
def otp_client(cast_a: Cast) -> Client:
    """The cast's supervisor, logged in and OTP-verified."""
    return verified_client_for(cast_a.supervisor)


def chromium_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    return None


@pytest.fixture
def browser() -> Iterator[object]:
    """Headless Debian Chromium through Selenium; skipped with a reason where it is absent."""
    paths = chromium_paths()
    if paths is None:
        pytest.skip("Debian chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--window-size=1366,900",
        "--lang=en-GB",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=paths[1]), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(autouse=True)
def _reference_districts(request: pytest.FixtureRequest) -> None:
    """Put the 18 districts back after a transactional test's flush emptied their table.

    They are reference rows loaded by a data migration (audiences 0002); a test that runs with
    transaction=True ends by truncating every table, and a later test would find none.
    """
    marker = request.node.get_closest_marker("django_db")
    names = set(request.fixturenames)
    if marker is None and not names & {"db", "transactional_db"}:
        return
    transactional = "transactional_db" in names or bool(
        marker is not None
        and (marker.kwargs.get("transaction") or (marker.args and marker.args[0]))
    )
    request.getfixturevalue("transactional_db" if transactional else "db")
    from audiences.districts import DISTRICTS, load_districts
    from audiences.models import District

    if District.objects.count() != len(DISTRICTS):
        load_districts(District)
