"""Observatory warnings: each newly seen warning prepares the notice its department mapped to it.

The beat task fetches the warning summary (integrations.observatory); here every ISSUE,
REISSUE or CANCEL is recorded once, and for each department the most specific active mapping
prepares its notice through the shared trigger step, for the same approval as any other.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import audit_record
from integrations.audit_actions import IntegrationAuditAction as Action
from integrations.errors import TriggerRefused
from integrations.models import ObservatoryWarning, Trigger, TriggerSource, WarningMapping
from integrations.observatory import WarningAction, WarningState, parse_warnsum
from integrations.services import triggers


def _warning_values(state: WarningState) -> dict[str, str]:
    local = timezone.localtime(state.issue_time)
    changed = timezone.localtime(state.update_time or state.issue_time)
    return {
        "cancel_time": changed.strftime("%H:%M"),
        "warning_code": state.code,
        "warning_name_en": state.name_en,
        "warning_name_zh": state.name_zh,
        "warning_type_en": state.type_en or state.name_en,
        "warning_type_zh": state.type_zh or state.name_zh,
        "issue_time": local.strftime("%H:%M"),
        "issue_date": local.strftime("%Y-%m-%d"),
        "time": local.strftime("%H:%M"),
        "date": local.strftime("%Y-%m-%d"),
        # Per language (notices.templating fills title_zh/body_zh with the _zh values).
        "issue_date_en": f"{local.day} {local:%B %Y}",
        "issue_date_zh": f"{local.year}年{local.month}月{local.day}日",
        "date_en": f"{local.day} {local:%B %Y}",
        "date_zh": f"{local.year}年{local.month}月{local.day}日",
        "action": state.action,
    }


def _best_mapping(mappings: Sequence[WarningMapping], state: WarningState) -> WarningMapping | None:
    """The most specific active mapping: an exact code beats the longest prefix."""
    matching = [m for m in mappings if m.matches(state.code, state.statement)]
    if not matching:
        return None
    return max(
        matching,
        key=lambda m: (not m.code_pattern.endswith("*"), len(m.code_pattern)),
    )


def _ingest_one(state: WarningState, mapping: WarningMapping, now: dt.datetime) -> Trigger | None:
    template = mapping.cancel_template if state.action == WarningAction.CANCEL else mapping.template
    if template is None or not template.is_active:
        return None
    try:
        with transaction.atomic():
            trigger = Trigger.objects.create(
                department=mapping.department,
                source=TriggerSource.OBSERVATORY,
                key=state.key,
                template=template,
                values=_warning_values(state),
                triggered_at=now,
            )
            triggers.trigger_notice_prepare(
                trigger=trigger,
                template=template,
                values=trigger.values,
                tier=mapping.tier,
                segments=list(mapping.segments.all()),
                external_ref=f"hko:{state.key}",
            )
            audit_record(
                actor=None,
                actor_label="observatory feed",
                action=Action.WARNING_TRIGGERED,
                target=trigger,
                department=mapping.department,
                data={
                    "code": state.code,
                    "action": state.action,
                    "issue_time": state.issue_time.isoformat(),
                    "mapping": mapping.code_pattern,
                    "template": template.code,
                    "notice_id": trigger.notice_id,
                },
            )
            return trigger
    except IntegrityError:
        # Another poll prepared this warning for this department first: one notice only.
        return None
    except TriggerRefused as refusal:
        with transaction.atomic():
            audit_record(
                actor=None,
                actor_label="observatory feed",
                action=Action.WARNING_FAILED,
                target=mapping,
                department=mapping.department,
                data={"code": state.code, "action": state.action, "reason": refusal.message},
            )
        return None


def _record_seen(state: WarningState, now: dt.datetime) -> None:
    """Keep each warning state once (audited the first time it is seen)."""
    with transaction.atomic():
        _, created = ObservatoryWarning.objects.get_or_create(
            code=state.code,
            issue_time=state.issue_time,
            action=state.action,
            defaults={
                "statement": state.statement,
                "name_en": state.name_en,
                "name_zh": state.name_zh,
                "type_en": state.type_en,
                "type_zh": state.type_zh,
                "payload": state.raw,
                "first_seen_at": now,
            },
        )
        if created:
            audit_record(
                actor=None,
                actor_label="observatory feed",
                action=Action.WARNING_RECEIVED,
                target_label=f"{state.code} {state.action}",
                data={
                    "code": state.code,
                    "action": state.action,
                    "issue_time": state.issue_time.isoformat(),
                },
            )


def warnings_ingest(
    *, english: dict[str, Any], chinese: dict[str, Any], now: dt.datetime | None = None
) -> list[Trigger]:
    """Prepare the mapped notice for each newly seen ISSUE, REISSUE or CANCEL.

    The same (code, issue time, action) never prepares two notices for a department: the
    trigger's unique key is the guarantee, so overlapping polls are harmless. Permission: the
    system (beat task). Audit: warning_received once per warning state, warning_triggered per
    notice, warning_failed when a template cannot be filled.
    """
    now = now or timezone.now()
    prepared: list[Trigger] = []
    # Warnings (and lingering CANCELs) older than this are history, not news: a portal started
    # in the afternoon must not prepare the morning's notices.
    horizon = now - dt.timedelta(seconds=settings.INTEGRATIONS_HKO_MAX_AGE_SECONDS)
    states = [
        s for s in parse_warnsum(english, chinese) if (s.update_time or s.issue_time) >= horizon
    ]
    if not states:
        return prepared
    mappings = list(
        WarningMapping.objects.filter(active=True, department__is_active=True).select_related(
            "department", "template", "cancel_template"
        )
    )
    for state in states:
        _record_seen(state, now)
        by_department: dict[int, list[WarningMapping]] = {}
        for mapping in mappings:
            by_department.setdefault(mapping.department_id, []).append(mapping)
        for department_mappings in by_department.values():
            best = _best_mapping(department_mappings, state)
            if best is None:
                continue
            if Trigger.objects.filter(
                department_id=best.department_id, source=TriggerSource.OBSERVATORY, key=state.key
            ).exists():
                continue
            trigger = _ingest_one(state, best, now)
            if trigger is not None:
                prepared.append(trigger)
    return prepared
