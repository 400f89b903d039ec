"""Fixtures for the integrations tests: seeded templates and an integration with its secret."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from audiences.models import Segment
from common.testing.cast import Cast
from integrations.models import Integration
from integrations.services import callers
from notices.models import NoticeTemplate
from notices.templating import templates_seed
from notices.testing import add_recipients, everyone_segment


@dataclass
class Caller:
    integration: Integration
    secret: str
    templates: dict[str, NoticeTemplate]


@pytest.fixture
def templates_a(cast_a: Cast) -> dict[str, NoticeTemplate]:
    add_recipients(cast_a.department, 5)
    return {t.code: t for t in templates_seed(actor=None, department=cast_a.department)}


@pytest.fixture
def sha_tin(cast_a: Cast) -> Segment:
    return everyone_segment(cast_a.department, name="Sha Tin residents")


@pytest.fixture
def caller(cast_a: Cast, templates_a: dict[str, NoticeTemplate]) -> Caller:
    integration, secret = callers.integration_create(
        actor=cast_a.system_admin,
        department=cast_a.department,
        name="Operations centre",
        templates=[templates_a["water-outage"], templates_a["rainstorm-black"]],
        rate_limit_per_minute=30,
    )
    return Caller(integration, secret, templates_a)
