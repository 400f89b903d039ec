"""The shared step of every trigger: start a notice from a template, or answer a repeat.

Every trigger (webhook, CAP alert, Observatory warning) prepares its notice here, through
notices.services, and submits it for the same human approval as a notice written by staff;
nothing here sends. The trigger's unique key makes a repeat return the first trigger.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from audiences.models import Segment
from audit.services import audit_record
from common.errors import ApplicationError
from integrations.audit_actions import IntegrationAuditAction as Action
from integrations.errors import TriggerRefused
from integrations.models import CancellationRequest, Integration, Trigger
from integrations.services import signing
from notices.models import Notice, NoticeTemplate, Source
from notices.templating import notice_create_from_template, template_placeholders

# The longest value a trigger may fill a placeholder with.
MAX_VALUE_CHARS = 4000


@dataclass
class TriggerResult:
    """What an intake answers: the trigger, whether it repeated an earlier one, any cancellations."""

    trigger: Trigger
    repeated: bool = False
    cancellations: list[CancellationRequest] = field(default_factory=list)


def trigger_repeat_or_conflict(
    existing: Trigger, body_digest: str, integration: Integration
) -> TriggerResult:
    """Answer a key seen before with its first trigger, or refuse it if the body differs."""
    if existing.body_digest != body_digest:
        raise TriggerRefused(
            409,
            "idempotency_conflict",
            "This idempotency key was already used with a different body.",
        )
    audit_record(
        actor=None,
        actor_label=f"integration:{integration.slug}",
        action=Action.TRIGGER_REPEATED,
        target=existing,
        department=integration.department,
        data={"key": existing.key, "notice_id": existing.notice_id},
    )
    return TriggerResult(trigger=existing, repeated=True)


def _check_values(template: NoticeTemplate, values: dict[str, str]) -> None:
    missing = [name for name in template_placeholders(template) if not values.get(name)]
    if missing:
        raise TriggerRefused(
            422,
            "missing_values",
            f"Template {template.code!r} needs values for: {', '.join(missing)}.",
        )


def trigger_notice_prepare(
    *,
    trigger: Trigger,
    template: NoticeTemplate,
    values: dict[str, str],
    tier: str | None = None,
    segments: Sequence[Segment] = (),
    external_ref: str = "",
) -> Notice:
    """Create the notice from the template and submit it for approval (approvers alerted on commit)."""
    _check_values(template, values)
    overrides: dict[str, Any] = {}
    if tier:
        overrides["tier"] = tier
    if segments:
        overrides["segments"] = list(segments)
    try:
        notice = notice_create_from_template(
            actor=None,
            template=template,
            department=trigger.department,
            values=values,
            overrides=overrides or None,
            source=Source.INTEGRATION,
            triggered_at=trigger.triggered_at,
            submit=True,
            external_ref=external_ref[:200],
        )
    except ApplicationError as exc:
        raise TriggerRefused(422, exc.code or "notice_invalid", exc.message) from None
    trigger.notice = notice
    trigger.template = template
    trigger.save(update_fields=["notice", "template"])
    return notice


def trigger_accepted_audit(
    trigger: Trigger, integration: Integration | None, extra: dict[str, Any]
) -> None:
    """Audit an accepted trigger (integrations.trigger_accepted), with `extra` in its data."""
    audit_record(
        actor=None,
        actor_label=f"integration:{integration.slug}" if integration else "observatory feed",
        action=Action.TRIGGER_ACCEPTED,
        target=trigger,
        department=trigger.department,
        data={
            "source": trigger.source,
            "key": trigger.key,
            "template": trigger.template.code if trigger.template else None,
            "notice_id": trigger.notice_id,
            "value_names": sorted(trigger.values),
            **extra,
        },
    )


def trigger_status_read(*, request: signing.SignedRequest, public_id: str) -> Trigger:
    """The caller's own trigger and its notice, for the status URL. Signed like every request."""

    def work(integration: Integration, now: dt.datetime) -> TriggerResult:
        trigger = (
            Trigger.objects.select_related("notice")
            .filter(integration=integration, public_id=public_id)
            .first()
        )
        if trigger is None:
            raise TriggerRefused(404, "unknown_trigger", "This integration has no such trigger.")
        audit_record(
            actor=None,
            actor_label=f"integration:{integration.slug}",
            action=Action.STATUS_READ,
            target=trigger,
            department=integration.department,
            data={"notice_id": trigger.notice_id},
        )
        return TriggerResult(trigger=trigger)

    return signing.signed_request_handle(request, work).trigger
