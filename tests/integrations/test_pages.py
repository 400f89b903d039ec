"""The integrations pages: system administrators only, their own department, the secret shown once."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from integrations import crypto
from integrations.models import DepartmentTriggerPolicy, Integration
from integrations.selectors import trigger_target_for, trigger_wait_for
from integrations.services import warning_mappings
from integrations.testing import signed_headers
from notices.models import Notice


@pytest.mark.django_db
def test_a_system_admin_creates_an_integration_and_sees_the_secret_once(
    cast_a, templates_a, verified_client
):
    client = verified_client(cast_a.system_admin)
    response = client.post(
        reverse("integrations:create", args=[cast_a.department.code]),
        {
            "name": "Flood sensors",
            "templates": [templates_a["water-outage"].pk],
            "rate_limit_per_minute": 20,
        },
    )
    integration = Integration.objects.get(name="Flood sensors")
    assert response.status_code == 302
    assert response["Location"] == reverse("integrations:secret", args=[integration.pk])
    page = client.get(response["Location"])
    assert page["Cache-Control"] == "no-store"
    html = page.content.decode()
    secret = html.split('id="integration-secret"', 1)[1].split('value="', 1)[1].split('"', 1)[0]
    assert secret.startswith("whsec_")
    assert crypto.decrypt_secret(integration.secret_encrypted) == secret
    assert secret not in integration.secret_encrypted
    # Shown once: a second visit no longer has it.
    again = client.get(response["Location"]).content.decode()
    assert secret not in again
    assert f"…{integration.secret_hint}" in again
    assert AuditEvent.objects.filter(
        action="integrations.created", actor=cast_a.system_admin
    ).exists()
    # And it works.
    body = json.dumps({"template": "water-outage", "values": {}}).encode()
    call = client.post(
        reverse("api:trigger", kwargs={"integration": integration.slug}),
        data=body,
        content_type="application/json",
        **signed_headers(secret, body, idempotency_key="page-test-0001"),
    )
    assert call.json()["error"]["code"] == "missing_values"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["pr_officer", "supervisor", "department_admin", "auditor"])
def test_other_roles_cannot_manage_integrations(cast_a, templates_a, verified_client, role):
    client = verified_client(getattr(cast_a, role))
    assert client.get(reverse("integrations:list")).status_code == 403
    assert (
        client.get(reverse("integrations:create", args=[cast_a.department.code])).status_code == 404
    )


@pytest.mark.django_db
def test_another_departments_integration_answers_404(cast_a, cast_b, caller, verified_client):
    client = verified_client(cast_b.system_admin)
    pk = caller.integration.pk
    for name in ("integrations:detail", "integrations:secret"):
        assert client.get(reverse(name, args=[pk])).status_code == 404
    for name in ("integrations:toggle", "integrations:rotate"):
        assert client.post(reverse(name, args=[pk])).status_code == 404
    caller.integration.refresh_from_db()
    assert caller.integration.active
    listing = client.get(reverse("integrations:list")).content.decode()
    assert caller.integration.name not in listing


@pytest.mark.django_db
def test_disable_rotate_and_edit_from_the_detail_page(cast_a, caller, verified_client):
    client = verified_client(cast_a.system_admin)
    pk = caller.integration.pk
    assert client.get(reverse("integrations:detail", args=[pk])).status_code == 200
    client.post(reverse("integrations:toggle", args=[pk]))
    caller.integration.refresh_from_db()
    assert not caller.integration.active
    rotated = client.post(reverse("integrations:rotate", args=[pk]))
    assert rotated["Location"] == reverse("integrations:secret", args=[pk])
    assert "whsec_" in client.get(rotated["Location"]).content.decode()
    response = client.post(
        reverse("integrations:detail", args=[pk]),
        {"name": "Ops centre", "templates": [], "rate_limit_per_minute": 5},
    )
    assert response.status_code == 302
    caller.integration.refresh_from_db()
    assert caller.integration.name == "Ops centre"
    assert caller.integration.templates.count() == 0
    changes = AuditEvent.objects.filter(action="integrations.updated").order_by("sequence")
    assert changes.first().data["after"] == {"active": False}
    assert AuditEvent.objects.filter(action="integrations.secret_rotated").count() == 1


@pytest.mark.django_db
def test_the_department_sets_its_target_and_the_wait_badge_shows_it(
    cast_a, cast_b, caller, verified_client, client, django_capture_on_commit_callbacks
):
    assert trigger_target_for(cast_a.department) == dt.timedelta(minutes=5)
    admin = verified_client(cast_a.system_admin)
    admin.post(reverse("integrations:policy-save", args=["WSD"]), {"WSD-target_seconds": "120"})
    assert DepartmentTriggerPolicy.objects.get(department=cast_a.department).target_seconds == 120
    assert trigger_target_for(cast_b.department) == dt.timedelta(minutes=5)
    # Another department's administrator cannot set it.
    other = verified_client(cast_b.system_admin)
    assert (
        other.post(
            reverse("integrations:policy-save", args=["WSD"]), {"WSD-target_seconds": "60"}
        ).status_code
        == 404
    )
    body = json.dumps(
        {
            "template": "rainstorm-black",
            "values": {"issue_time": "14:05"},
        }
    ).encode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("api:trigger", kwargs={"integration": caller.integration.slug}),
            data=body,
            content_type="application/json",
            **signed_headers(caller.secret, body, idempotency_key="wait-badge-0001"),
        )
    notice = Notice.objects.get(pk=response.json()["notice_id"])
    wait = trigger_wait_for(notice, now=notice.triggered_at + dt.timedelta(seconds=150))
    assert wait.target_seconds == 120
    assert wait.waited_seconds == 150
    assert wait.over_target
    html = Template("{% load integrations_wait %}{% trigger_wait notice %}").render(
        Context({"notice": notice})
    )
    assert "integrations-wait" in html
    manual = Notice(department=cast_a.department, triggered_at=None)
    assert trigger_wait_for(manual) is None
    assert (
        Template("{% load integrations_wait %}{% trigger_wait notice %}")
        .render(Context({"notice": manual}))
        .strip()
        == ""
    )
    assert timezone.now() >= notice.triggered_at


@pytest.mark.django_db
def test_the_back_office_shows_only_the_admins_own_mappings(
    cast_a, cast_b, templates_a, verified_client
):
    from integrations.models import WarningMapping
    from notices.models import Tier
    from notices.templating import templates_seed

    templates_b = {t.code: t for t in templates_seed(actor=None, department=cast_b.department)}
    mine = warning_mappings.warning_mapping_save(
        actor=None,
        mapping=WarningMapping(
            department=cast_a.department,
            code_pattern="WRAINB",
            template=templates_a["rainstorm-black"],
            tier=Tier.CITYWIDE,
        ),
    )
    theirs = warning_mappings.warning_mapping_save(
        actor=None,
        mapping=WarningMapping(
            department=cast_b.department,
            code_pattern="WRAINB",
            template=templates_b["rainstorm-black"],
            tier=Tier.CITYWIDE,
        ),
    )
    client = verified_client(cast_a.system_admin)
    changelist = client.get(reverse("admin:integrations_warningmapping_changelist"))
    assert changelist.status_code == 200
    assert changelist.context["cl"].result_count == 1
    assert (
        client.get(
            reverse("admin:integrations_warningmapping_change", args=[theirs.pk])
        ).status_code
        == 302
    )
    response = client.post(
        reverse("admin:integrations_warningmapping_change", args=[mine.pk]),
        {
            "department": cast_a.department.pk,
            "code_pattern": "wrainb",
            "template": templates_a["rainstorm-red"].pk,
            "cancel_template": templates_a["rainstorm-cancelled"].pk,
            "tier": Tier.CITYWIDE,
            "active": "on",
        },
    )
    assert response.status_code == 302, response.content
    mine.refresh_from_db()
    assert mine.template == templates_a["rainstorm-red"]
    assert AuditEvent.objects.filter(
        action="integrations.mapping_changed", actor=cast_a.system_admin
    ).exists()
    for name in ("integration", "trigger", "cancellationrequest"):
        assert client.get(reverse(f"admin:integrations_{name}_changelist")).status_code == 200
