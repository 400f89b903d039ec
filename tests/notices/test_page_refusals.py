"""Refusals a page makes before any service runs are on record too (issue 15, point 6): the
actor, the path, the operation and the reason, in the refused notice's trail."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from notices import services
from notices.models import Status
from notices.testing import add_recipients, compose_data, everyone_segment, targeted_fields


@pytest.fixture
def draft(cast_a):
    add_recipients(cast_a.department, 3)
    return services.notice_create(
        actor=cast_a.pr_officer,
        department=cast_a.department,
        **targeted_fields(everyone_segment(cast_a.department)),
    )


def refused(notice, code):
    return AuditEvent.objects.filter(
        action="notices.refused", target_id=str(notice.pk), data__code=code
    )


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "operation"), [("edit", "update"), ("submit", "submit")])
def test_another_departments_notice_is_404_and_on_record(
    cast_a, cast_b, verified_client, draft, name, operation
) -> None:
    client = verified_client(cast_b.pr_officer)
    url = reverse(f"notices:{name}", args=[draft.pk])
    response = client.post(url, compose_data() if name == "edit" else {})
    assert response.status_code == 404
    event = refused(draft, "not_visible").get()
    assert event.actor == cast_b.pr_officer
    assert event.data["operation"] == operation
    assert event.data["path"] == url
    assert event.department == cast_a.department
    draft.refresh_from_db()
    assert draft.status == Status.DRAFT
    assert draft.version == 1


@pytest.mark.django_db
def test_a_supervisor_opening_the_editor_is_refused_and_on_record(
    cast_a, verified_client, draft
) -> None:
    client = verified_client(cast_a.supervisor)
    assert client.get(reverse("notices:edit", args=[draft.pk])).status_code == 403
    event = refused(draft, "not_composer").get()
    assert event.actor == cast_a.supervisor
    assert event.data["operation"] == "update"
    assert event.data["path"] == reverse("notices:edit", args=[draft.pk])


@pytest.mark.django_db
def test_cancelling_another_departments_notice_is_on_record(
    cast_a, cast_b, verified_client, draft
) -> None:
    client = verified_client(cast_b.supervisor)
    response = client.post(reverse("notices:cancel", args=[draft.pk]), {"reason": "no"})
    assert response.status_code == 404
    assert refused(draft, "not_visible").get().data["operation"] == "cancel"


@pytest.mark.django_db
def test_composing_in_another_department_is_on_record(cast_a, cast_b, verified_client) -> None:
    client = verified_client(cast_b.pr_officer)
    assert client.get(reverse("notices:compose", args=["WSD"])).status_code == 404
    event = AuditEvent.objects.get(action="notices.refused", data__operation="create")
    assert event.actor == cast_b.pr_officer
    assert event.department == cast_a.department
    assert event.data["code"] == "not_composer"
