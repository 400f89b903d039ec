"""Templates: the placeholders a template asks for, a notice filled in from one, and the
predefined templates each department starts with (notices.seed)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import permissions as perms
from accounts.models import Department
from audit.services import audit_record
from common.errors import ApplicationError
from common.types import Actor
from notices import content as nc
from notices import services
from notices.audit_actions import NoticeAuditAction as Action
from notices.errors import NoticeInvalid
from notices.guards import require_perm
from notices.models import Notice, NoticeTemplate, Source
from notices.seed import default_templates
from notices.voice import voice_available


def template_placeholders(template: NoticeTemplate) -> list[str]:
    texts = [
        template.title_en,
        template.title_zh,
        template.body_en,
        template.body_zh,
        template.link_url,
    ]
    for button in template.buttons or []:
        texts += [str(button.get(k) or "") for k in ("title_en", "title_zh", "url")]
    return nc.placeholders_in(texts)


def template_fill(template: NoticeTemplate, values: Mapping[str, str]) -> dict[str, Any]:
    """The template's notice fields with every placeholder filled; NoticeInvalid names the missing."""
    names = template_placeholders(template)
    clean = {k: str(v).strip() for k, v in values.items() if v is not None}
    missing = [n for n in names if not clean.get(n)]
    if missing:
        raise NoticeInvalid(
            {
                f"value_{n}": [_("Fill in the placeholder {%(name)s}.") % {"name": n}]
                for n in missing
            }
        )

    def fill(text: str) -> str:
        return nc.fill_placeholders(text, clean)

    # A value may come per language ("date_zh" beside "date"): the Chinese text then reads
    # 2026年12月5日, not an English date.
    def in_language(lang: str) -> dict[str, str]:
        suffix = f"_{lang}"
        own = {k[: -len(suffix)]: v for k, v in clean.items() if k.endswith(suffix) and v}
        return {**clean, **own}

    def fill_en(text: str) -> str:
        return nc.fill_placeholders(text, in_language("en"))

    def fill_zh(text: str) -> str:
        return nc.fill_placeholders(text, in_language("zh"))

    return {
        "tier": template.tier,
        "kind": template.kind,
        "title_en": fill_en(template.title_en),
        "title_zh": fill_zh(template.title_zh),
        "body_en": fill_en(template.body_en),
        "body_zh": fill_zh(template.body_zh),
        "buttons": [
            {
                "title_en": fill_en(str(b.get("title_en") or "")),
                "title_zh": fill_zh(str(b.get("title_zh") or "")),
                "url": fill(str(b.get("url") or "")),
            }
            for b in template.buttons or []
        ],
        "link_url": fill(template.link_url),
        "requires_confirmation": template.requires_confirmation,
        "remind_after_minutes": template.remind_after_minutes,
        "max_reminders": template.max_reminders,
        "remind_whom": template.remind_whom,
        "classification": template.classification,
        # Where espeak-ng is missing the notice goes without its clip (notices.voice).
        "voice_from_text": template.voice_from_text and voice_available(),
    }


def notice_create_from_template(
    *,
    actor: Actor,
    template: NoticeTemplate,
    department: Department,
    values: dict[str, str],
    overrides: Mapping[str, Any] | None = None,
    source: str = Source.TEMPLATE,
    triggered_at: datetime | None = None,
    submit: bool = False,
    external_ref: str = "",
) -> Notice:
    """A notice from a template; every placeholder must be filled (NoticeInvalid otherwise).

    With actor=None (an integration) and submit=True the system is the author and submitter,
    so any supervisor of the department may approve. `overrides` may set any editable field
    (segments, send_at, ...). Expiry comes from the template's expires_after_minutes unless given.
    """
    if template.department_id != department.pk:
        raise PermissionDenied(_("The template belongs to another department."))
    if not template.is_active:
        raise ApplicationError(_("This template is switched off."), code="template_inactive")
    fields = template_fill(template, values)
    fields.update(overrides or {})
    if template.expires_after_minutes and "expires_at" not in (overrides or {}):
        start = fields.get("send_at") or timezone.now()
        fields["expires_at"] = start + timedelta(minutes=template.expires_after_minutes)

    def create() -> Notice:
        with transaction.atomic():
            return services.notice_create(
                actor=actor,
                department=department,
                source=source,
                template=template,
                triggered_at=triggered_at,
                external_ref=external_ref,
                **fields,
            )

    try:
        notice = create()
    except NoticeInvalid as exc:
        if not fields.get("voice_from_text") or set(exc.errors) != {"voice_summary"}:
            raise
        # The filled text makes no voice clip (too long): the warning goes without one.
        fields["voice_from_text"] = False
        notice = create()
    if submit:
        notice = services.notice_submit(actor=actor, notice=notice)
    return notice


@transaction.atomic
def templates_seed(*, actor: Actor, department: Department) -> list[NoticeTemplate]:
    """Create or refresh the predefined templates (rainstorm warnings; water outage for WSD).

    Permission: ADMINISTER_DEPARTMENT (actor=None: migrations and commands). Idempotent.
    Audit: notices.templates_seeded.
    """
    require_perm(actor, perms.ADMINISTER_DEPARTMENT, department, system_ok=True)
    saved: list[NoticeTemplate] = []
    for spec in default_templates(department.code):
        code = spec.pop("code")
        template, _created = NoticeTemplate.objects.update_or_create(
            department=department, code=code, defaults=spec
        )
        saved.append(template)
    audit_record(
        actor=actor,
        action=Action.TEMPLATES_SEEDED,
        target=department,
        department=department,
        data={"templates": [t.code for t in saved]},
    )
    return saved
