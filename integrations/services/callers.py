"""Managing callers (system administrators): integrations, their secrets, and the trigger target.

An integration is a department's machine caller with its own secret, templates and rate limit;
the plain secret is returned once, when it is issued. Every change is audited.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts import permissions as perms
from accounts.models import Department
from audit.services import audit_record
from common.errors import ApplicationError
from common.types import Actor
from integrations import crypto
from integrations.audit_actions import IntegrationAuditAction as Action
from integrations.models import DepartmentTriggerPolicy, Integration
from notices.models import NoticeTemplate


def require_department_admin(actor: Actor, department: Department) -> None:
    """Refuse unless `actor` administers `department`; None is the system (commands, seeding)."""
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
    actor: Actor,
    department: Department,
    name: str,
    templates: Iterable[NoticeTemplate] = (),
    cap_template: NoticeTemplate | None = None,
    rate_limit_per_minute: int = 30,
) -> tuple[Integration, str]:
    """Create an integration and return it with its plain secret, which is never shown again.

    Permission: administer_department. Audit: integrations.created.
    """
    require_department_admin(actor, department)
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
    actor: Actor,
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
    require_department_admin(actor, locked.department)
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
def integration_rotate_secret(*, actor: Actor, integration: Integration) -> str:
    """Issue a new secret (returned once); the old one keeps verifying for the grace period.

    Permission: administer_department. Audit: integrations.secret_rotated.
    """
    locked = Integration.objects.select_for_update(no_key=True).get(pk=integration.pk)
    require_department_admin(actor, locked.department)
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
    *, actor: Actor, department: Department, target_seconds: int
) -> DepartmentTriggerPolicy:
    """Set the department's target from trigger to send. Permission: administer_department."""
    require_department_admin(actor, department)
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
