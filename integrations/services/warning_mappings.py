"""Warning mappings (system administrators): which template each Observatory warning code prepares.

A mapping names a code (exact, or a prefix ending in *), the template for an issue and the
template for its cancellation, the tier and the segments. Every change is audited.
"""

from __future__ import annotations

import re

from django.db import transaction

from accounts.models import Department
from audit.services import audit_record
from common.errors import ApplicationError
from common.types import Actor
from integrations.audit_actions import IntegrationAuditAction as Action
from integrations.models import WarningMapping
from integrations.services.callers import require_department_admin
from notices.models import NoticeTemplate

WARNING_CODE = re.compile(r"^[A-Z0-9]{2,16}$")


@transaction.atomic
def warning_mapping_save(*, actor: Actor, mapping: WarningMapping) -> WarningMapping:
    """Create or change a warning mapping. Permission: administer_department. Audit: mapping_changed."""
    require_department_admin(actor, mapping.department)
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
def warning_mappings_seed(*, actor: Actor, department: Department) -> list[WarningMapping]:
    """Map each active template whose trigger code is a warning code (WRAINA, TC8NE, ...) to it.

    A template with trigger code "<STATEMENT>-CANCEL" (e.g. WRAIN-CANCEL) becomes the
    cancellation notice of every mapping of that statement. Existing mappings are kept as they
    are (an administrator may have changed them). Permission: administer_department.
    Audit: integrations.mapping_changed per mapping created.
    """
    require_department_admin(actor, department)
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
def warning_mapping_delete(*, actor: Actor, mapping: WarningMapping) -> None:
    """Delete a mapping (audited before the delete). Permission: administer_department."""
    require_department_admin(actor, mapping.department)
    audit_record(
        actor=actor,
        action=Action.MAPPING_DELETED,
        target=mapping,
        department=mapping.department,
        data={"code_pattern": mapping.code_pattern},
    )
    mapping.delete()
