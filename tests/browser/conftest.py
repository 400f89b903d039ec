"""Browser-test helpers: axe-core (vendored, tests/browser/vendor) and logging a person in.

``axe_check(browser, label)`` runs axe-core 4.10 in the page open in ``browser`` against
WCAG 2.0, 2.1 and 2.2 A and AA and returns nothing; it fails the test listing every violation
(rule, impact, the elements' selectors and axe's summary). ``login_browser(browser,
live_server, user)`` gives the browser a session that passed password and TOTP.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from common.testing.cast import verified_client_for

VENDOR = Path(__file__).resolve().parent / "vendor"
# axe-core 4.10.3 from the npm registry (`npm pack axe-core@4.10`), MPL-2.0 (vendor/LICENSE).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]


@cache
def axe_source() -> str:
    return (VENDOR / "axe.min.js").read_text(encoding="utf-8")


def axe_violations(browser: Any) -> list[dict[str, Any]]:
    """axe-core's violations in the page open in ``browser`` (WCAG 2.x A and AA rules)."""
    browser.execute_script(axe_source())
    browser.set_script_timeout(60)
    result = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        axe.run(document, {runOnly: {type: "tag", values: arguments[0]}, resultTypes: ["violations"]})
          .then(r => done(r.violations.map(v => ({
              id: v.id, impact: v.impact, help: v.help,
              nodes: v.nodes.map(n => ({target: n.target.join(" "), summary: n.failureSummary}))
          }))))
          .catch(e => done([{id: "axe-error", impact: "critical", help: String(e), nodes: []}]));
        """,
        AXE_TAGS,
    )
    return list(result)


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']}")
        for node in v["nodes"][:5]:
            lines.append(f"    {node['target']}: {(node['summary'] or '').splitlines()[-1:]}")
    return "\n".join(lines)


def assert_no_axe_violations(browser: Any, label: str) -> None:
    violations = axe_violations(browser)
    assert not violations, f"axe-core violations on {label} ({browser.current_url}):\n" + describe(
        violations
    )


@pytest.fixture
def axe_check() -> Callable[[Any, str], None]:
    return assert_no_axe_violations


def login_browser(browser: Any, base_url: str, user: User, language: str = "en") -> None:
    """Put a verified session (and the language cookie) for ``user`` into the browser."""
    client = verified_client_for(user)
    browser.get(base_url + "/health/live")
    browser.add_cookie(
        {
            "name": settings.SESSION_COOKIE_NAME,
            "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
            "path": "/",
        }
    )
    browser.add_cookie({"name": settings.LANGUAGE_COOKIE_NAME, "value": language, "path": "/"})


@pytest.fixture
def browser_login() -> Callable[..., None]:
    return login_browser
