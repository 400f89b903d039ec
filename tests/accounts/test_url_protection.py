"""Walks the whole URL configuration: every staff URL refuses a session that is not OTP-verified.

A page added later is covered automatically; only views marked public or pre-OTP are let
through, and those are listed here by name so adding one is a visible decision.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse

from common.testing.cast import unverified_client_for

# Views reachable before the second factor, by URL name.
PUBLIC = {
    "accounts:login",
    "set_language",
    "health",
    "health-live",
    "health-ready",
    # Prometheus: a bearer token or a configured network (operations.metrics.allowed).
    "metrics",
    # Machine endpoints, authenticated by HMAC signature (integrations.api_views).
    "api:trigger",
    "api:trigger-status",
    "api:cap",
    "audiences:dingtalk-callback",
    "delivery:confirm",
    # A sent notice's whole text, opened from its image card (a signed link, read-only).
    "delivery:notice-page",
    # A person's own one-time enrolment link after a credential reset (accounts.credentials).
    "accounts:enrolment-link",
}
PRE_OTP = {"accounts:verify", "accounts:enrol", "accounts:logout"}

_SAMPLES = {"int": "1", "str": "x", "slug": "x", "uuid": str(uuid.uuid4()), "path": "x/y"}


def _fill_route(route: str) -> str:
    return re.sub(r"<(?:(\w+):)?\w+>", lambda m: _SAMPLES[m.group(1) or "str"], route)


def _fill_regex(regex: str) -> str:
    def group(match: re.Match[str]) -> str:
        body = match.group(2)
        # An alternation of literals (admin's app_label): take the first.
        first = body.split("|")[0]
        return first if re.fullmatch(r"[\w-]+", first) else "1"

    text = re.sub(r"\(\?P<(\w+)>((?:[^()]|\([^()]*\))*)\)", group, regex)
    return text.replace("^", "").replace("$", "").replace("\\Z", "").replace("\\", "")


def _walk(
    patterns: list[URLPattern | URLResolver], prefix: str = "", ns: str = ""
) -> Iterator[tuple[str, str]]:
    for entry in patterns:
        pattern = entry.pattern
        raw = (
            _fill_route(str(pattern._route))
            if hasattr(pattern, "_route")
            else _fill_regex(pattern.regex.pattern)
        )  # type: ignore[attr-defined]
        if isinstance(entry, URLResolver):
            child_ns = f"{ns}{entry.namespace}:" if entry.namespace else ns
            yield from _walk(entry.url_patterns, prefix + raw, child_ns)
        else:
            yield (
                "/" + prefix + raw,
                f"{ns}{entry.name}" if entry.name else f"{ns}<unnamed {entry.lookup_str}>",
            )


def all_urls() -> list[tuple[str, str]]:
    return sorted(set(_walk(get_resolver().url_patterns)))


def test_the_walk_finds_the_staff_pages() -> None:
    names = {name for _, name in all_urls()}
    assert {"accounts:home", "accounts:department-detail", "admin:index"} <= names
    assert len(names) > 30  # the admin alone contributes dozens


def test_every_generated_url_resolves_to_its_pattern() -> None:
    for url, name in all_urls():
        match = resolve(url)
        assert (
            match.view_name == name
            or name.startswith(f"{match.namespace}:<unnamed")
            or "<unnamed" in name
        ), url


@pytest.mark.django_db
def test_every_staff_url_refuses_an_unverified_session(cast_a) -> None:
    client = unverified_client_for(cast_a.supervisor)
    verify_url = reverse("accounts:verify")
    checked = 0
    for url, name in all_urls():
        if name in PUBLIC or name in PRE_OTP:
            continue
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            assert response.status_code == 302, (
                f"{method.upper()} {url} ({name}) answered {response.status_code}"
            )
            assert response["Location"].startswith(verify_url), (
                f"{url} ({name}) redirected to {response['Location']}"
            )
            checked += 1
    assert checked > 60


@pytest.mark.django_db
def test_every_staff_url_sends_anonymous_visitors_to_login(client) -> None:
    login_url = reverse("accounts:login")
    for url, name in all_urls():
        if name in PUBLIC:
            continue
        response = client.get(url)
        assert response.status_code == 302, f"{url} ({name})"
        assert response["Location"].startswith(login_url), f"{url} ({name})"


def test_the_exempt_views_are_exactly_the_listed_ones() -> None:
    exempt = set()
    for url, name in all_urls():
        func = resolve(url).func
        if getattr(func, "otp_exempt", False) or getattr(func, "otp_pre_verification", False):
            exempt.add(name)
    assert exempt == PUBLIC | PRE_OTP
