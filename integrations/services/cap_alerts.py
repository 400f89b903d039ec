"""CAP 1.2 alerts: a signed Alert or Update prepares a bilingual notice, a Cancel withdraws one.

The request is authenticated by signing and parsed by integrations.cap; an Alert or Update
fills the integration's CAP template through the shared trigger step, and a Cancel is handed
to cancellations. The alert's sender and identifier make a repeat answer with the same notice.
"""

from __future__ import annotations

import datetime as dt

from django.utils.translation import pgettext_lazy

from common.i18n import in_message_language
from integrations import crypto
from integrations.cap import CapAlert, CapInfo, CapMsgType, CapScope, CapStatus, parse_alert
from integrations.districts import districts_for_areas
from integrations.errors import TriggerRefused
from integrations.models import Integration, Trigger, TriggerSource
from integrations.services import cancellations, signing, triggers
from integrations.services.triggers import MAX_VALUE_CHARS, TriggerResult

# The message types that act; an Ack or Error prepares nothing.
# The label of the districts line in the ready-made body of each language (a DingTalk message).
AREAS = pgettext_lazy("dingtalk message", "Areas")
ACTING_MSG_TYPES = frozenset({CapMsgType.ALERT, CapMsgType.UPDATE, CapMsgType.CANCEL})


def _cap_values(alert: CapAlert) -> dict[str, str]:
    values: dict[str, str] = {
        "cap_identifier": alert.identifier,
        "cap_sender": alert.sender,
        "sent": alert.sent,
    }
    infos: list[tuple[str, CapInfo]] = []
    if alert.english is not None:
        infos.append(("en", alert.english))
    if alert.chinese is not None:
        infos.append(("zh", alert.chinese))
    for lang, info in infos:
        districts = districts_for_areas(info.areas)
        named = [d.name_en if lang == "en" else d.name_zh for d in districts]
        areas = ", ".join(named or [a.description for a in info.areas])
        label = in_message_language(lang, AREAS)
        # One ready-made body per language, for templates that take the alert as it is.
        message = "\n\n".join(
            part
            for part in (info.description, info.instruction, f"{label}: {areas}" if areas else "")
            if part
        )
        values.update(
            {
                f"event_{lang}": info.event,
                f"headline_{lang}": info.headline or info.event,
                f"description_{lang}": info.description,
                f"instruction_{lang}": info.instruction,
                f"sender_name_{lang}": info.sender_name,
                f"areas_{lang}": areas,
                f"message_{lang}": message or info.headline or info.event,
            }
        )
        values.setdefault("severity", info.severity)
        values.setdefault("urgency", info.urgency)
        values.setdefault("expires", info.expires)
        values.setdefault("districts", ",".join(d.code for d in districts))
    return {name: value[:MAX_VALUE_CHARS] for name, value in values.items()}


def _refuse_unless_actionable(alert: CapAlert) -> None:
    if alert.status != CapStatus.ACTUAL:
        raise TriggerRefused(
            422,
            "cap_not_actual",
            f"Only Actual alerts prepare notices; this one is {alert.status}.",
        )
    if alert.scope != CapScope.PUBLIC:
        raise TriggerRefused(
            422,
            "cap_not_public",
            f"Only Public alerts prepare notices; this one is {alert.scope}.",
        )
    if alert.msg_type not in ACTING_MSG_TYPES:
        raise TriggerRefused(
            422, "cap_unsupported", f"A CAP {alert.msg_type} message prepares nothing."
        )


def _cancel(
    integration: Integration, alert: CapAlert, body_digest: str, now: dt.datetime
) -> TriggerResult:
    trigger = Trigger.objects.create(
        department=integration.department,
        integration=integration,
        source=TriggerSource.CAP,
        key=alert.key,
        body_digest=body_digest,
        values={"references": " ".join(",".join(r) for r in alert.references)},
        triggered_at=now,
    )
    requested = cancellations.cancellations_request(integration, alert, now)
    triggers.trigger_accepted_audit(
        trigger, integration, {"msg_type": CapMsgType.CANCEL.value, "cancellations": len(requested)}
    )
    return TriggerResult(trigger=trigger, cancellations=requested)


def _prepare(
    integration: Integration, alert: CapAlert, body_digest: str, now: dt.datetime
) -> TriggerResult:
    if alert.english is None and alert.chinese is None:
        raise TriggerRefused(
            422,
            "cap_no_language",
            "The alert has no info block in English (en-*) or Chinese (zh-*).",
        )
    template = integration.cap_template
    if template is None or not template.is_active:
        raise TriggerRefused(
            422, "unknown_template", "This integration has no active template for CAP alerts."
        )
    values = _cap_values(alert)
    trigger = Trigger.objects.create(
        department=integration.department,
        integration=integration,
        source=TriggerSource.CAP,
        key=alert.key,
        body_digest=body_digest,
        template=template,
        values=values,
        triggered_at=now,
    )
    triggers.trigger_notice_prepare(
        trigger=trigger, template=template, values=values, external_ref=f"cap:{alert.key}"
    )
    triggers.trigger_accepted_audit(
        trigger,
        integration,
        {
            "msg_type": alert.msg_type,
            "languages": [
                lang for lang, info in (("en", alert.english), ("zh", alert.chinese)) if info
            ],
            "ignored_languages": list(alert.ignored_languages),
        },
    )
    return TriggerResult(trigger=trigger)


def cap_receive(*, request: signing.SignedRequest) -> TriggerResult:
    """A signed CAP 1.2 alert prepares a bilingual notice; a Cancel cancels or asks for a recall.

    Only Actual, Public alerts act. One info per language (en-*, zh-*) becomes the English and
    Chinese values of the integration's CAP template; areas naming districts are listed. Values
    a CAP template may use: headline_en/_zh, description_en/_zh, instruction_en/_zh,
    event_en/_zh, sender_name_en/_zh, areas_en/_zh, message_en/_zh (description, instruction
    and areas together), severity, urgency, expires, sent, districts, cap_identifier, cap_sender.
    Idempotent on the alert's sender and identifier. Audit as for webhooks, plus
    integrations.cancellation_requested for each notice a Cancel touches.
    """

    def work(integration: Integration, now: dt.datetime) -> TriggerResult:
        alert = parse_alert(request.body)
        _refuse_unless_actionable(alert)
        body_digest = crypto.digest(request.body)
        existing = Trigger.objects.filter(
            integration=integration, source=TriggerSource.CAP, key=alert.key
        ).first()
        if existing is not None:
            return triggers.trigger_repeat_or_conflict(existing, body_digest, integration)
        if alert.msg_type == CapMsgType.CANCEL:
            return _cancel(integration, alert, body_digest, now)
        return _prepare(integration, alert, body_digest, now)

    return signing.signed_request_handle(request, work)
