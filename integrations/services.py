"""Writes for integrations: managing callers, and turning signed requests and warnings into notices.

Every trigger prepares a notice through notices.services and submits it for the same human
approval as a notice written by staff; nothing here sends. Every use and every refusal is
audited (a flood of refusals is counted per minute instead, see _authenticate and _rate_limit). Refusals are recorded in their own transaction after the attempt rolled back, so a
refused request leaves nothing behind but its audit event.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, User
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from accounts import permissions as perms
from accounts.models import Department
from audiences.models import Segment
from audit.services import audit_record
from common.errors import ApplicationError
from integrations import crypto
from integrations.audit_actions import IntegrationAuditAction as Action
from integrations.cap import CapAlert, CapInfo, parse_alert
from integrations.districts import districts_for_areas
from integrations.errors import TriggerRefused
from integrations.models import (
    CancellationRequest,
    CancellationState,
    DepartmentTriggerPolicy,
    Integration,
    ObservatoryWarning,
    RateWindow,
    SeenSignature,
    Trigger,
    TriggerSource,
    WarningMapping,
)
from integrations.observatory import CANCEL, WarningState, parse_warnsum
from notices.content import PLACEHOLDER
from notices.models import CANCELLABLE_STATUSES, Notice, NoticeTemplate, Source, Status

MAX_VALUES = 40
MAX_VALUE_CHARS = 4000
WARNING_CODE = re.compile(r"^[A-Z0-9]{2,16}$")
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:\-]{8,200}$")
# Notices in these states have reached people: a CAP Cancel asks a supervisor to recall them.
RECALLABLE_STATUSES = frozenset(
    {Status.SENDING, Status.PAUSED, Status.SENT, Status.SENT_WITH_FAILURES}
)


# --- managing integrations (system administrators) -------------------------------------------


def _require_admin(actor: AbstractBaseUser | None, department: Department) -> None:
    # actor=None is the system (commands, seeding); every person is checked.
    if actor is not None:
        perms.require_department_perm(actor, perms.ADMINISTER_DEPARTMENT, department)


def _check_templates(
    department: Department, templates: Iterable[NoticeTemplate], cap_template: NoticeTemplate | None
) -> list[NoticeTemplate]:
    chosen = list(templates)
    chosen_all = [*chosen, cap_template] if cap_template is not None else chosen
    for template in chosen_all:
        if template.department_id != department.pk:
            raise ApplicationError(
                "An integration may only use its own department's templates.", field="templates"
            )
    return chosen


def _unique_slug(department: Department, name: str) -> str:
    base = slugify(f"{department.code}-{name}")[:50] or department.code.lower()
    slug, n = base, 1
    while Integration.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def integration_create(
    *,
    actor: AbstractBaseUser | None,
    department: Department,
    name: str,
    templates: Iterable[NoticeTemplate] = (),
    cap_template: NoticeTemplate | None = None,
    rate_limit_per_minute: int = 30,
) -> tuple[Integration, str]:
    """Create an integration and return it with its plain secret, which is never shown again.

    Permission: administer_department. Audit: integrations.created.
    """
    _require_admin(actor, department)
    name = name.strip()
    if not name:
        raise ApplicationError("Give the integration a name.", field="name")
    if Integration.objects.filter(department=department, name=name).exists():
        raise ApplicationError(
            "The department already has an integration with that name.", field="name"
        )
    chosen = _check_templates(department, templates, cap_template)
    secret = crypto.new_secret()
    integration = Integration(
        department=department,
        name=name,
        slug=_unique_slug(department, name),
        cap_template=cap_template,
        secret_encrypted=crypto.encrypt_secret(secret),
        secret_hint=secret[-4:],
        rate_limit_per_minute=rate_limit_per_minute,
        created_by=actor if isinstance(actor, User) else None,
    )
    integration.full_clean()
    integration.save()
    integration.templates.set(chosen)
    audit_record(
        actor=actor,
        action=Action.CREATED,
        target=integration,
        department=department,
        data={
            "slug": integration.slug,
            "templates": sorted(t.code for t in chosen),
            "cap_template": cap_template.code if cap_template else None,
            "rate_limit_per_minute": rate_limit_per_minute,
        },
    )
    return integration, secret


@transaction.atomic
def integration_update(
    *,
    actor: AbstractBaseUser | None,
    integration: Integration,
    name: str | None = None,
    templates: Iterable[NoticeTemplate] | None = None,
    cap_template: NoticeTemplate | None = None,
    clear_cap_template: bool = False,
    rate_limit_per_minute: int | None = None,
    active: bool | None = None,
) -> Integration:
    """Change an integration's name, templates, limit or active flag.

    Permission: administer_department. Audit: integrations.updated with before/after.
    """
    locked = Integration.objects.select_for_update(no_key=True).get(pk=integration.pk)
    _require_admin(actor, locked.department)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}

    def change(field_name: str, value: Any, shown: Any = None) -> None:
        old = getattr(locked, field_name)
        if old != value:
            before[field_name] = getattr(old, "code", old)
            after[field_name] = shown if shown is not None else getattr(value, "code", value)
            setattr(locked, field_name, value)

    if name is not None:
        change("name", name.strip())
    if rate_limit_per_minute is not None:
        change("rate_limit_per_minute", rate_limit_per_minute)
    if active is not None:
        change("active", active)
    if cap_template is not None or clear_cap_template:
        _check_templates(locked.department, (), cap_template)
        change("cap_template", None if clear_cap_template else cap_template)
    if templates is not None:
        chosen = _check_templates(locked.department, templates, None)
        old_codes = sorted(locked.templates.values_list("code", flat=True))
        new_codes = sorted(t.code for t in chosen)
        if old_codes != new_codes:
            before["templates"], after["templates"] = old_codes, new_codes
            locked.templates.set(chosen)
    if not after:
        return locked
    locked.full_clean()
    locked.save()
    audit_record(
        actor=actor,
        action=Action.UPDATED,
        target=locked,
        department=locked.department,
        data={"before": before, "after": after},
    )
    return locked


@transaction.atomic
def integration_rotate_secret(*, actor: AbstractBaseUser | None, integration: Integration) -> str:
    """Issue a new secret (returned once); the old one keeps verifying for the grace period.

    Permission: administer_department. Audit: integrations.secret_rotated.
    """
    locked = Integration.objects.select_for_update(no_key=True).get(pk=integration.pk)
    _require_admin(actor, locked.department)
    now = timezone.now()
    secret = crypto.new_secret()
    locked.previous_secret_encrypted = locked.secret_encrypted
    locked.previous_secret_valid_until = now + dt.timedelta(
        seconds=settings.INTEGRATIONS_ROTATION_GRACE_SECONDS
    )
    locked.secret_encrypted = crypto.encrypt_secret(secret)
    locked.secret_hint = secret[-4:]
    locked.secret_rotated_at = now
    locked.save()
    audit_record(
        actor=actor,
        action=Action.SECRET_ROTATED,
        target=locked,
        department=locked.department,
        data={"previous_valid_until": locked.previous_secret_valid_until.isoformat()},
    )
    return secret


@transaction.atomic
def trigger_policy_set(
    *, actor: AbstractBaseUser | None, department: Department, target_seconds: int
) -> DepartmentTriggerPolicy:
    """Set the department's target from trigger to send. Permission: administer_department."""
    _require_admin(actor, department)
    policy, _ = DepartmentTriggerPolicy.objects.select_for_update().get_or_create(
        department=department,
        defaults={"target_seconds": settings.INTEGRATIONS_DEFAULT_TARGET_SECONDS},
    )
    before = policy.target_seconds
    policy.target_seconds = target_seconds
    policy.full_clean()
    policy.save()
    audit_record(
        actor=actor,
        action=Action.POLICY_CHANGED,
        target=policy,
        department=department,
        data={"before": before, "after": target_seconds},
    )
    return policy


@transaction.atomic
def warning_mapping_save(
    *, actor: AbstractBaseUser | None, mapping: WarningMapping
) -> WarningMapping:
    """Create or change a warning mapping. Permission: administer_department. Audit: mapping_changed."""
    _require_admin(actor, mapping.department)
    for template in (mapping.template, mapping.cancel_template):
        if template is not None and template.department_id != mapping.department_id:
            raise ApplicationError(
                "A mapping may only use its own department's templates.", field="template"
            )
    created = mapping.pk is None
    mapping.code_pattern = mapping.code_pattern.strip().upper()
    mapping.full_clean()
    mapping.save()
    audit_record(
        actor=actor,
        action=Action.MAPPING_CHANGED,
        target=mapping,
        department=mapping.department,
        data={
            "created": created,
            "code_pattern": mapping.code_pattern,
            "template": mapping.template.code,
            "cancel_template": mapping.cancel_template.code if mapping.cancel_template else None,
            "tier": mapping.tier,
            "active": mapping.active,
        },
    )
    return mapping


@transaction.atomic
def warning_mappings_seed(
    *, actor: AbstractBaseUser | None, department: Department
) -> list[WarningMapping]:
    """Map each active template whose trigger code is a warning code (WRAINA, TC8NE, ...) to it.

    A template with trigger code "<STATEMENT>-CANCEL" (e.g. WRAIN-CANCEL) becomes the
    cancellation notice of every mapping of that statement. Existing mappings are kept as they
    are (an administrator may have changed them). Permission: administer_department.
    Audit: integrations.mapping_changed per mapping created.
    """
    _require_admin(actor, department)
    templates = list(
        NoticeTemplate.objects.filter(department=department, is_active=True)
        .exclude(trigger_code="")
        .order_by("trigger_code")
    )
    cancels = {
        t.trigger_code.removesuffix("-CANCEL"): t
        for t in templates
        if t.trigger_code.endswith("-CANCEL")
    }
    created = []
    for template in templates:
        code = template.trigger_code.strip().upper()
        if code.endswith("-CANCEL") or not WARNING_CODE.fullmatch(code):
            continue
        if WarningMapping.objects.filter(department=department, code_pattern=code).exists():
            continue
        statement = next((s for s in cancels if code.startswith(s)), None)
        created.append(
            warning_mapping_save(
                actor=actor,
                mapping=WarningMapping(
                    department=department,
                    code_pattern=code,
                    template=template,
                    cancel_template=cancels.get(statement) if statement else None,
                    tier=template.tier,
                ),
            )
        )
    return created


@transaction.atomic
def warning_mapping_delete(*, actor: AbstractBaseUser | None, mapping: WarningMapping) -> None:
    """Delete a mapping (audited before the delete). Permission: administer_department."""
    _require_admin(actor, mapping.department)
    audit_record(
        actor=actor,
        action=Action.MAPPING_DELETED,
        target=mapping,
        department=mapping.department,
        data={"code_pattern": mapping.code_pattern},
    )
    mapping.delete()


# --- signed machine requests ------------------------------------------------------------------


@dataclass(frozen=True)
class SignedRequest:
    """What the API views hand over: the raw body and the signing headers, nothing parsed."""

    slug: str
    endpoint: str  # "webhook", "cap" or "status"
    timestamp: str
    signature: str
    body: bytes
    max_bytes: int
    content_length: int | None = None


@dataclass
class TriggerResult:
    trigger: Trigger
    repeated: bool = False
    cancellations: list[CancellationRequest] = field(default_factory=list)


def _record_refusal(
    integration: Integration | None, request: SignedRequest, refusal: TriggerRefused
) -> None:
    with transaction.atomic():
        audit_record(
            actor=None,
            actor_label=f"integration:{request.slug[:60]}",
            action=Action.TRIGGER_REFUSED,
            target=integration,
            target_label=None if integration else f"unknown integration {request.slug[:60]!r}",
            department=integration.department if integration else None,
            data={
                "endpoint": request.endpoint,
                "status": refusal.status,
                "code": refusal.code,
                "reason": refusal.message,
                "bytes": len(request.body),
            },
        )


def _count(integration: Integration, now: dt.datetime, counter: str) -> int:
    """Add one to a counter of the integration's current minute; returns its new value."""
    window = now.replace(second=0, microsecond=0)
    rows = RateWindow.objects.filter(integration=integration, window_start=window)
    with transaction.atomic():
        if not rows.update(**{counter: F(counter) + 1}):
            try:
                with transaction.atomic():
                    RateWindow.objects.create(
                        integration=integration, window_start=window, **{counter: 1}
                    )
            except IntegrityError:
                # Another worker created the window between our update and insert.
                rows.update(**{counter: F(counter) + 1})
        value: int = rows.values_list(counter, flat=True).get()
    return value


def _rate_limit(integration: Integration, now: dt.datetime) -> None:
    if _count(integration, now, "count") <= integration.rate_limit_per_minute:
        return
    refused = _count(integration, now, "refused")
    retry_after = max(1, 60 - now.second)
    # A burst is recorded by its first refusal in the audit trail and counted in full on the
    # window row, so a misbehaving caller cannot flood the trail (which serialises its writes).
    raise TriggerRefused(
        429,
        "rate_limited",
        f"More than {integration.rate_limit_per_minute} requests this minute; retry after {retry_after} s.",
        retry_after=retry_after,
        audit=refused == 1,
    )


def _secrets(integration: Integration, now: dt.datetime) -> list[str]:
    found = []
    current = crypto.decrypt_secret(integration.secret_encrypted)
    if current is not None:
        found.append(current)
    if (
        integration.previous_secret_encrypted
        and integration.previous_secret_valid_until is not None
        and integration.previous_secret_valid_until > now
    ):
        previous = crypto.decrypt_secret(integration.previous_secret_encrypted)
        if previous is not None:
            found.append(previous)
    return found


def _verify_signature(integration: Integration, request: SignedRequest, now: dt.datetime) -> None:
    if not request.timestamp or not request.signature:
        raise TriggerRefused(
            401,
            "signature_missing",
            "Sign the request: X-Portal-Timestamp (Unix seconds) and X-Portal-Signature "
            "(sha256=HMAC-SHA256 of '<timestamp>.<body>' with the integration's secret).",
        )
    if not request.timestamp.isdigit() or len(request.timestamp) > 12:
        raise TriggerRefused(401, "timestamp_invalid", "X-Portal-Timestamp must be Unix seconds.")
    skew = abs(now.timestamp() - int(request.timestamp))
    window = settings.INTEGRATIONS_SIGNATURE_WINDOW_SECONDS
    if skew > window:
        raise TriggerRefused(
            401,
            "timestamp_expired",
            f"The timestamp is {int(skew)} s away from the portal's clock; the limit is {window} s.",
        )
    if not any(
        crypto.signature_matches(secret, request.timestamp, request.body, request.signature)
        for secret in _secrets(integration, now)
    ):
        raise TriggerRefused(401, "signature_invalid", "The signature does not match the body.")


def _authenticate(request: SignedRequest, now: dt.datetime) -> Integration:
    """Size, integration, active flag, signature, then the rate limit.

    The signature comes before the limit (an HMAC costs microseconds): only signed requests
    count against the caller's minute, so someone who merely knows the address cannot lock the
    Observatory out in a storm by sending junk. Failed signatures are counted on their own and
    audited up to the integration's limit a minute; a flood beyond that is counted, not
    written to the trail one by one.
    """
    too_big = (request.content_length or 0) > request.max_bytes or len(
        request.body
    ) > request.max_bytes
    if too_big:
        raise TriggerRefused(
            413, "too_large", f"The body is larger than the {request.max_bytes} bytes allowed."
        )
    integration = Integration.objects.select_related("department").filter(slug=request.slug).first()
    if integration is None:
        raise TriggerRefused(404, "unknown_integration", "There is no integration at this address.")
    try:
        if not integration.active or not integration.department.is_active:
            raise TriggerRefused(403, "integration_disabled", "This integration is disabled.")
        try:
            _verify_signature(integration, request, now)
        except TriggerRefused as refusal:
            failed = _count(integration, now, "unsigned")
            refusal.audit = failed <= integration.rate_limit_per_minute
            raise
        _rate_limit(integration, now)
    except TriggerRefused as refusal:
        refusal.integration = integration
        raise
    return integration


def _claim_signature(integration: Integration, request: SignedRequest, now: dt.datetime) -> None:
    """Each signature is accepted once; the unique row is the replay cache, shared by all workers."""
    try:
        with transaction.atomic():
            SeenSignature.objects.create(
                integration=integration,
                signature_digest=crypto.digest(request.signature.encode()),
                seen_at=now,
            )
    except IntegrityError:
        raise TriggerRefused(
            409,
            "replayed",
            "This exact signed request was already received; sign each request anew.",
        ) from None


def _mark_used(integration: Integration, now: dt.datetime) -> None:
    Integration.objects.filter(pk=integration.pk).update(last_used_at=now)


def _guarded(
    request: SignedRequest, work: Callable[[Integration, dt.datetime], TriggerResult]
) -> TriggerResult:
    """Authenticate, run `work(integration, now)` in one transaction, and audit any refusal."""
    now = timezone.now()
    integration: Integration | None = None
    try:
        integration = _authenticate(request, now)
        try:
            with transaction.atomic():
                _claim_signature(integration, request, now)
                result: TriggerResult = work(integration, now)
                _mark_used(integration, now)
        except IntegrityError:
            # A concurrent request with the same key won the trigger's unique constraint.
            raise TriggerRefused(
                409,
                "in_progress",
                "The same trigger is being prepared by another request; retry to get its result.",
            ) from None
        return result
    except TriggerRefused as refusal:
        named = integration or refusal.integration
        if refusal.audit:
            _record_refusal(named if isinstance(named, Integration) else None, request, refusal)
        raise


def _repeat_or_conflict(
    existing: Trigger, body_digest: str, integration: Integration
) -> TriggerResult:
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
    from notices.templating import template_placeholders

    missing = [name for name in template_placeholders(template) if not values.get(name)]
    if missing:
        raise TriggerRefused(
            422,
            "missing_values",
            f"Template {template.code!r} needs values for: {', '.join(missing)}.",
        )


def _prepare_notice(
    *,
    trigger: Trigger,
    template: NoticeTemplate,
    values: dict[str, str],
    tier: str | None = None,
    segments: Sequence[Segment] = (),
    external_ref: str = "",
) -> Notice:
    """Create the notice from the template and submit it for approval (approvers alerted on commit)."""
    from notices.templating import notice_create_from_template

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


def _accepted(trigger: Trigger, integration: Integration | None, extra: dict[str, Any]) -> None:
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


def _parse_webhook(body: bytes) -> tuple[str, dict[str, str], list[str]]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise TriggerRefused(400, "malformed", "The body is not JSON.") from None
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


def webhook_receive(*, request: SignedRequest, idempotency_key: str) -> TriggerResult:
    """A signed webhook names a template and its values: prepare that notice and submit it.

    Permission: the integration's HMAC signature; the template must be one the integration may
    use. Idempotent on the caller's key (the same key and body answer with the same notice; the
    same key with another body is refused). Audit: integrations.trigger_accepted / _repeated /
    _refused. Side effect: notices alerts the department's approvers after commit.
    """

    def work(integration: Integration, now: dt.datetime) -> TriggerResult:
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
            return _repeat_or_conflict(existing, body_digest, integration)
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
        _prepare_notice(
            trigger=trigger,
            template=template,
            values=values,
            segments=segments,
            external_ref=f"webhook:{idempotency_key}",
        )
        _accepted(trigger, integration, {})
        return TriggerResult(trigger=trigger)

    return _guarded(request, work)


def trigger_status_read(*, request: SignedRequest, public_id: str) -> Trigger:
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

    return _guarded(request, work).trigger


# --- CAP 1.2 ---------------------------------------------------------------------------------


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
        label = "Areas" if lang == "en" else "地區"
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


def _cap_cancel(
    integration: Integration, alert: CapAlert, trigger: Trigger, now: dt.datetime
) -> list[CancellationRequest]:
    from notices.services import notice_cancel

    keys = [f"{sender} {identifier}" for sender, identifier, _sent in alert.references]
    originals = list(
        Trigger.objects.select_related("notice")
        .filter(
            department=integration.department,
            source=TriggerSource.CAP,
            key__in=keys,
            notice__isnull=False,
        )
        .order_by("pk")
    )
    if not originals:
        raise TriggerRefused(
            422,
            "unknown_reference",
            "The Cancel references no alert that prepared a notice here.",
        )
    requests = []
    for original in originals:
        notice = Notice.objects.select_for_update(no_key=True).get(trigger=original)
        reason = f"CAP Cancel {alert.identifier} from {alert.sender}"[:500]
        if notice.status in CANCELLABLE_STATUSES:
            notice_cancel(actor=None, notice=notice, reason=reason)
            state = CancellationState.CANCELLED
        elif notice.status in RECALLABLE_STATUSES:
            state = CancellationState.AWAITING_CONFIRMATION
        else:
            state = CancellationState.NOTHING_TO_DO
        cancellation = CancellationRequest.objects.create(
            trigger=original,
            notice=notice,
            cancel_key=alert.key,
            state=state,
            reason=reason,
            requested_at=now,
        )
        audit_record(
            actor=None,
            actor_label=f"integration:{integration.slug}",
            action=Action.CANCELLATION_REQUESTED,
            target=cancellation,
            department=integration.department,
            data={"notice_id": notice.pk, "notice_status": notice.status, "state": state},
        )
        requests.append(cancellation)
    return requests


def cap_receive(*, request: SignedRequest) -> TriggerResult:
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
        if alert.status != "Actual":
            raise TriggerRefused(
                422,
                "cap_not_actual",
                f"Only Actual alerts prepare notices; this one is {alert.status}.",
            )
        if alert.scope != "Public":
            raise TriggerRefused(
                422,
                "cap_not_public",
                f"Only Public alerts prepare notices; this one is {alert.scope}.",
            )
        if alert.msg_type not in {"Alert", "Update", "Cancel"}:
            raise TriggerRefused(
                422, "cap_unsupported", f"A CAP {alert.msg_type} message prepares nothing."
            )
        body_digest = crypto.digest(request.body)
        existing = Trigger.objects.filter(
            integration=integration, source=TriggerSource.CAP, key=alert.key
        ).first()
        if existing is not None:
            return _repeat_or_conflict(existing, body_digest, integration)
        if alert.msg_type == "Cancel":
            trigger = Trigger.objects.create(
                department=integration.department,
                integration=integration,
                source=TriggerSource.CAP,
                key=alert.key,
                body_digest=body_digest,
                values={"references": " ".join(",".join(r) for r in alert.references)},
                triggered_at=now,
            )
            cancellations = _cap_cancel(integration, alert, trigger, now)
            _accepted(
                trigger, integration, {"msg_type": "Cancel", "cancellations": len(cancellations)}
            )
            return TriggerResult(trigger=trigger, cancellations=cancellations)
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
        _prepare_notice(
            trigger=trigger, template=template, values=values, external_ref=f"cap:{alert.key}"
        )
        _accepted(
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

    return _guarded(request, work)


def cancellation_decide(
    *, actor: AbstractBaseUser, cancellation: CancellationRequest, confirm: bool
) -> CancellationRequest:
    """A supervisor recalls the notice a CAP Cancel asked to withdraw, or dismisses the request.

    Permission: recall_notice in the notice's department. Confirming calls the delivery
    engine's recall (its own checks, 24-hour window and audit) before the request is marked.
    Audit: integrations.cancellation_confirmed / _dismissed.
    """
    from delivery.followup import notice_recall

    current = CancellationRequest.objects.select_related("notice__department").get(
        pk=cancellation.pk
    )
    perms.require_department_perm(actor, perms.RECALL_NOTICE, current.notice.department)
    if current.state != CancellationState.AWAITING_CONFIRMATION:
        raise ApplicationError("This request was already decided.", code="already_decided")
    if confirm:
        # Outside our transaction: the recall commits (and queues its DingTalk calls) on its own.
        notice_recall(actor=actor, notice=current.notice, reason=current.reason)
    with transaction.atomic():
        moved = CancellationRequest.objects.filter(
            pk=current.pk, state=CancellationState.AWAITING_CONFIRMATION
        ).update(
            state=CancellationState.CONFIRMED if confirm else CancellationState.DISMISSED,
            decided_by=actor,
            decided_at=timezone.now(),
        )
        if moved != 1:
            raise ApplicationError("This request was already decided.", code="already_decided")
        current.refresh_from_db()
        audit_record(
            actor=actor,
            action=Action.CANCELLATION_CONFIRMED if confirm else Action.CANCELLATION_DISMISSED,
            target=current,
            department=current.notice.department,
            data={"notice_id": current.notice_id},
        )
    return current


# --- Observatory warnings --------------------------------------------------------------------


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
    template = mapping.cancel_template if state.action == CANCEL else mapping.template
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
            _prepare_notice(
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


def seen_signatures_purge(*, now: dt.datetime | None = None) -> int:
    """Forget signatures and rate windows older than the signature window (they can't be replayed)."""
    now = now or timezone.now()
    horizon = now - dt.timedelta(seconds=2 * settings.INTEGRATIONS_SIGNATURE_WINDOW_SECONDS)
    deleted, _ = SeenSignature.objects.filter(seen_at__lt=horizon).delete()
    RateWindow.objects.filter(window_start__lt=horizon).delete()
    return deleted
