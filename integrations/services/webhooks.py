"""Signed webhooks: a caller names one of its templates and the values; that notice is prepared.

The request is authenticated by signing, then parsed here; the notice is prepared by the
shared trigger step. The caller's Idempotency-Key makes a retry answer with the same notice.
"""

from __future__ import annotations

import datetime as dt
import json
import re

from accounts.models import Department
from audiences.models import Segment
from integrations import crypto
from integrations.errors import TriggerRefused
from integrations.models import Integration, Trigger, TriggerSource
from integrations.services import signing, triggers
from integrations.services.triggers import MAX_VALUE_CHARS, TriggerResult
from notices.content import PLACEHOLDER

MAX_VALUES = 40
JSON_MEDIA_TYPE = "application/json"
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:\-]{8,200}$")


def _parse_webhook(body: bytes) -> tuple[str, dict[str, str], list[str]]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise TriggerRefused(400, "malformed", "The body is not JSON.") from None
    except RecursionError:
        raise TriggerRefused(
            400, "malformed", "The body's JSON is nested too deeply for a trigger."
        ) from None
    if not isinstance(data, dict):
        raise TriggerRefused(400, "malformed", "The body must be a JSON object.")
    template = data.get("template")
    values = data.get("values", {})
    if not isinstance(template, str) or not template.strip():
        raise TriggerRefused(400, "malformed", 'Name the template: {"template": "<code>", ...}.')
    if not isinstance(values, dict) or len(values) > MAX_VALUES:
        raise TriggerRefused(
            400, "malformed", f'"values" must be an object of at most {MAX_VALUES} names.'
        )
    for name, value in values.items():
        if not PLACEHOLDER.fullmatch(f"{{{name}}}") or not isinstance(value, str):
            raise TriggerRefused(
                400,
                "malformed",
                f"Value {str(name)[:40]!r} must be a lowercase name with a text value.",
            )
        if len(value) > MAX_VALUE_CHARS:
            raise TriggerRefused(
                400, "malformed", f"Value {name!r} is longer than {MAX_VALUE_CHARS} characters."
            )
    segments = data.get("segments", [])
    if not isinstance(segments, list) or not all(isinstance(n, str) for n in segments):
        raise TriggerRefused(400, "malformed", '"segments" must be a list of segment names.')
    return (
        template.strip(),
        {name: value.strip() for name, value in values.items()},
        sorted({n.strip() for n in segments if n.strip()}),
    )


def _segments_named(department: Department, names: list[str]) -> list[Segment]:
    found = list(Segment.objects.filter(department=department, name__in=names).order_by("name"))
    unknown = sorted(set(names) - {s.name for s in found})
    if unknown:
        raise TriggerRefused(
            422, "unknown_segment", f"The department has no segment named {', '.join(unknown)}."
        )
    return found


def webhook_receive(*, request: signing.SignedRequest, idempotency_key: str) -> TriggerResult:
    """A signed webhook names a template and its values: prepare that notice and submit it.

    Permission: the integration's HMAC signature; the template must be one the integration may
    use. Idempotent on the caller's key (the same key and body answer with the same notice; the
    same key with another body is refused). Audit: integrations.trigger_accepted / _repeated /
    _refused. Side effect: notices alerts the department's approvers after commit.
    """

    def work(integration: Integration, now: dt.datetime) -> TriggerResult:
        if request.content_type != JSON_MEDIA_TYPE:
            raise TriggerRefused(
                415,
                "unsupported_media_type",
                f"Send the body as {JSON_MEDIA_TYPE} (Content-Type), not"
                f" {request.content_type[:60] or 'without a type'}.",
            )
        if not IDEMPOTENCY_KEY.fullmatch(idempotency_key or ""):
            raise TriggerRefused(
                400,
                "idempotency_key_missing",
                "Send an Idempotency-Key header of 8-200 letters, digits or ._:- characters.",
            )
        code, values, segment_names = _parse_webhook(request.body)
        body_digest = crypto.digest(request.body)
        existing = Trigger.objects.filter(
            integration=integration, source=TriggerSource.WEBHOOK, key=idempotency_key
        ).first()
        if existing is not None:
            return triggers.trigger_repeat_or_conflict(existing, body_digest, integration)
        template = integration.templates.filter(
            code=code, is_active=True, department=integration.department
        ).first()
        if template is None:
            raise TriggerRefused(
                422,
                "unknown_template",
                f"Template {code[:40]!r} does not exist or this integration may not use it.",
            )
        segments = _segments_named(integration.department, segment_names)
        trigger = Trigger.objects.create(
            department=integration.department,
            integration=integration,
            source=TriggerSource.WEBHOOK,
            key=idempotency_key,
            body_digest=body_digest,
            template=template,
            values=values,
            triggered_at=now,
        )
        triggers.trigger_notice_prepare(
            trigger=trigger,
            template=template,
            values=values,
            segments=segments,
            external_ref=f"webhook:{idempotency_key}",
        )
        triggers.trigger_accepted_audit(trigger, integration, {})
        return TriggerResult(trigger=trigger)

    return signing.signed_request_handle(request, work)
