"""Writes for departments, staff and roles. Each checks permission, writes, and audits in one transaction."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import enqueue
from accounts import permissions as perms
from accounts.models import (
    BackupCodeDevice,
    ChangeKind,
    Department,
    Membership,
    PrivilegedChange,
    Role,
)
from audit.actions import AuditAction
from audit.context import current_context
from audit.services import audit_record
from common.errors import ApplicationError

# Model-level permissions per role, for the back office only. Department scope never comes
# from these (selectors pass accept_global_perms=False); they only decide which admin pages open.
ROLE_MODEL_PERMISSIONS: dict[str, tuple[str, ...]] = {
    Role.PR_OFFICER: ("notices.view_notice", "notices.view_noticetemplate"),
    Role.SUPERVISOR: ("notices.view_notice", "notices.view_approval", "notices.view_rejection"),
    Role.DEPARTMENT_ADMIN: (
        "audiences.view_recipient",
        "audiences.change_recipient",
        "audiences.view_tag",
        "audiences.add_tag",
        "audiences.change_tag",
        "audiences.delete_tag",
        "audiences.view_venue",
        "audiences.add_venue",
        "audiences.change_venue",
        "audiences.delete_venue",
        "audiences.view_districtmapping",
        "audiences.add_districtmapping",
        "audiences.change_districtmapping",
        "audiences.delete_districtmapping",
        "audiences.view_directorysettings",
        "audiences.add_directorysettings",
        "audiences.change_directorysettings",
    ),
    Role.AUDITOR: (
        "notices.view_notice",
        "notices.view_rejection",
        "notices.view_noticecontribution",
        "audit.view_auditevent",
        "audit.export_auditevent",
        "audiences.view_recipient",
        "audiences.view_tag",
        "audiences.view_venue",
        "audiences.view_districtmapping",
    ),
    Role.SYSTEM_ADMIN: (
        "accounts.view_department",
        "accounts.change_department",
        "accounts.view_membership",
        "accounts.add_membership",
        "accounts.delete_membership",
        "auth.view_user",
        "auth.change_user",
        "accounts.view_privilegedchange",
        "accounts.change_privilegedchange",
        "audit.view_auditevent",
        "integrations.view_integration",
        "integrations.view_trigger",
        "integrations.view_cancellationrequest",
        "integrations.view_warningmapping",
        "integrations.add_warningmapping",
        "integrations.change_warningmapping",
        "integrations.delete_warningmapping",
        "operations.view_retentionpolicy",
        "operations.add_retentionpolicy",
        "operations.change_retentionpolicy",
    ),
}

# Separation of duties: whoever administers accounts or audits must not also write or approve.
CONFLICTING_ROLES: dict[str, frozenset[str]] = {
    Role.SYSTEM_ADMIN: frozenset({Role.PR_OFFICER, Role.SUPERVISOR, Role.AUDITOR}),
    Role.AUDITOR: frozenset(
        {Role.PR_OFFICER, Role.SUPERVISOR, Role.DEPARTMENT_ADMIN, Role.SYSTEM_ADMIN}
    ),
    Role.PR_OFFICER: frozenset({Role.SYSTEM_ADMIN, Role.AUDITOR}),
    Role.SUPERVISOR: frozenset({Role.SYSTEM_ADMIN, Role.AUDITOR}),
    Role.DEPARTMENT_ADMIN: frozenset({Role.AUDITOR}),
}

DEPARTMENT_EDITABLE_FIELDS = (
    "name_en",
    "name_zh",
    "dingtalk_agent_id",
    "dingtalk_app_key",
    "dingtalk_secret_ref",
    "dingtalk_edition",
    "reach_growth_percent",
    "broadcast_to_all_members",
)


def role_group_name(role: str) -> str:
    return f"role:{role}"


@transaction.atomic
def role_groups_sync() -> list[Group]:
    """Create or refresh one group per role holding that role's model permissions."""
    groups = []
    for role in Role.values:
        group, _ = Group.objects.get_or_create(name=role_group_name(role))
        wanted = []
        for dotted in ROLE_MODEL_PERMISSIONS[role]:
            app_label, codename = dotted.split(".")
            wanted.append(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        group.permissions.set(wanted)
        groups.append(group)
    return groups


def _require_admin(actor: User | None, department: Department) -> None:
    # actor=None is the system itself (management commands, seeding); every person is checked.
    if actor is not None:
        perms.require_department_perm(actor, perms.ADMINISTER_DEPARTMENT, department)


def _sync_user(user: User, department: Department) -> None:
    roles = set(
        Membership.objects.filter(user=user, department=department).values_list("role", flat=True)
    )
    perms.sync_role_permissions(user, department, roles)
    all_roles = set(Membership.objects.filter(user=user).values_list("role", flat=True))
    user.groups.set(Group.objects.filter(name__in=[role_group_name(r) for r in all_roles]))


# Roles whose holders approve notices: a person grants one only through
# accounts.credentials.role_grant_request, which waits for a second system administrator.
APPROVING_ROLES = frozenset({Role.SUPERVISOR})


def check_grant(actor: User | None, user: User, department: Department, role: str) -> None:
    """May `actor` give `user` the role in `department`? Raises the refusal if not."""
    _require_admin(actor, department)
    if role not in Role.values:
        raise ApplicationError(f"Unknown role {role!r}.", field="role")
    if actor is not None and actor.pk == user.pk:
        raise PermissionDenied("Nobody may grant a role to themselves.")
    held = set(Membership.objects.filter(user=user).values_list("role", flat=True))
    clash = held & CONFLICTING_ROLES[role]
    if clash:
        names = ", ".join(sorted(str(Role(r).label) for r in clash))
        raise ApplicationError(
            f"{user.get_username()} already holds {names}; {Role(role).label} cannot be combined with it.",
            field="role",
            code="role_conflict",
        )


def membership_grant(
    *,
    actor: User | None,
    user: User,
    department: Department,
    role: str,
    dingtalk_user_id: str = "",
    path: str = "service",
    granted_by: User | None = None,
) -> Membership:
    """Give `user` a role in `department`.

    Permission: administer_department in that department. Audit: accounts.role_granted.
    Refuses self-grants, role combinations that break separation of duties, and an approving
    role given by a person (accounts.credentials.role_grant_request asks a second system
    administrator); each refusal is audited (accounts.refused) with its path.
    """
    try:
        return _membership_grant(actor, user, department, role, dingtalk_user_id, granted_by)
    except (PermissionDenied, ApplicationError) as exc:
        with transaction.atomic():
            audit_record(
                actor=actor,
                action=AuditAction.REFUSED,
                target=user,
                department=department,
                data={
                    "path": path,
                    "url": current_context().path,
                    "operation": "role_grant",
                    "role": role,
                    "code": str(getattr(exc, "code", None) or "permission_denied"),
                    "reason": str(getattr(exc, "message", None) or exc),
                },
            )
        raise


def role_grant_pending(
    actor: User, user: User, department: Department, role: str, dingtalk_user_id: str = ""
) -> PrivilegedChange:
    """Record a person's request for an approving role, to wait for a second system
    administrator (accounts.credentials.privileged_change_approve). Audit:
    accounts.change_requested; the person concerned is told on commit."""
    check_grant(actor, user, department, role)
    change = PrivilegedChange.objects.create(
        kind=ChangeKind.ROLE_GRANT,
        user=user,
        department=department,
        role=role,
        requested_by=actor,
        dingtalk_user_id=dingtalk_user_id,
    )
    audit_record(
        actor=actor,
        action=AuditAction.CHANGE_REQUESTED,
        target=user,
        department=department,
        data={
            "change": change.pk,
            "kind": change.kind,
            "role": role,
            "state": change.state,
            "user": user.get_username(),
        },
    )
    change_id = change.pk
    transaction.on_commit(lambda: enqueue.tell_user(change_id))
    return change


@transaction.atomic
def _membership_grant(
    actor: User | None,
    user: User,
    department: Department,
    role: str,
    dingtalk_user_id: str,
    granted_by: User | None,
) -> Membership:
    check_grant(actor, user, department, role)
    if actor is not None and role in APPROVING_ROLES:
        raise PermissionDenied(
            "An approving role needs a second system administrator: request it instead."
        )
    if not Group.objects.filter(name=role_group_name(role)).exists():
        role_groups_sync()
    membership, created = Membership.objects.get_or_create(
        user=user,
        department=department,
        role=role,
        defaults={"granted_by": actor or granted_by, "dingtalk_user_id": dingtalk_user_id},
    )
    if created:
        _sync_user(user, department)
        audit_record(
            actor=actor,
            action=AuditAction.ROLE_GRANTED,
            target=membership,
            department=department,
            data={
                "user": user.get_username(),
                "role": role,
                "department": department.code,
                **({"requested_by": granted_by.get_username()} if granted_by else {}),
            },
        )
    return membership


@transaction.atomic
def membership_revoke(*, actor: User | None, membership: Membership) -> None:
    """Remove a role. Permission: administer_department. Audit: accounts.role_revoked (before the delete)."""
    department = membership.department
    _require_admin(actor, department)
    locked = Membership.objects.select_for_update().filter(pk=membership.pk).first()
    if locked is None:
        return
    audit_record(
        actor=actor,
        action=AuditAction.ROLE_REVOKED,
        target=locked,
        department=department,
        data={
            "user": locked.user.get_username(),
            "role": locked.role,
            "department": department.code,
        },
    )
    user = locked.user
    locked.delete()
    _sync_user(user, department)


@transaction.atomic
def staff_create(
    *,
    actor: User | None,
    username: str,
    full_name: str,
    email: str,
    department: Department,
    role: str,
    password: str | None = None,
    dingtalk_user_id: str = "",
) -> User:
    """Create a staff account with its first role. Audit: accounts.staff_created + role_granted
    (for an approving role given by a person: accounts.change_requested, waiting for a second
    system administrator)."""
    _require_admin(actor, department)
    if User.objects.filter(username__iexact=username).exists():
        raise ApplicationError(f"The username {username} is taken.", field="username")
    first, _, last = full_name.partition(" ")
    user = User(username=username, email=email, first_name=first, last_name=last, is_staff=True)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    try:
        user.full_clean()
    except ValidationError as exc:
        raise ApplicationError("; ".join(exc.messages), field="username") from None
    user.save()
    audit_record(
        actor=actor,
        action=AuditAction.STAFF_CREATED,
        target=user,
        department=department,
        data={"username": username, "department": department.code, "role": role},
    )
    if actor is not None and role in APPROVING_ROLES:
        # The account exists; the approving role waits for a second system administrator.
        role_grant_pending(actor, user, department, role, dingtalk_user_id)
    else:
        membership_grant(
            actor=actor,
            user=user,
            department=department,
            role=role,
            dingtalk_user_id=dingtalk_user_id,
        )
    return user


@transaction.atomic
def department_create(
    *, actor: User | None, code: str, name_en: str, name_zh: str, **fields: Any
) -> Department:
    """Create a department. Only the system (seeding) or a superuser bootstrapping the platform may."""
    if actor is not None and not getattr(actor, "is_superuser", False):
        raise PermissionDenied("Only the platform's superuser creates departments.")
    department = Department(code=code, name_en=name_en, name_zh=name_zh, **fields)
    department.full_clean()
    department.save()
    audit_record(
        actor=actor,
        action=AuditAction.DEPARTMENT_CREATED,
        target=department,
        data={
            "after": {
                "code": code,
                "name_en": name_en,
                "name_zh": name_zh,
                **{k: str(v) for k, v in fields.items()},
            }
        },
    )
    return department


@transaction.atomic
def department_update(
    *, actor: User | None, department: Department, changes: dict[str, Any]
) -> Department:
    """Change a department's settings. Permission: administer_department. Audit: before/after."""
    _require_admin(actor, department)
    unknown = set(changes) - set(DEPARTMENT_EDITABLE_FIELDS)
    if unknown:
        raise ApplicationError(
            f"These fields cannot be changed here: {', '.join(sorted(unknown))}."
        )
    locked = Department.objects.select_for_update().get(pk=department.pk)
    before = {name: getattr(locked, name) for name in changes}
    for name, value in changes.items():
        setattr(locked, name, value)
    locked.full_clean()
    changed = {name for name in changes if before[name] != getattr(locked, name)}
    if changed:
        locked.save(update_fields=sorted(changed))
        audit_record(
            actor=actor,
            action=AuditAction.DEPARTMENT_UPDATED,
            target=locked,
            data={
                "before": {n: before[n] for n in sorted(changed)},
                "after": {n: getattr(locked, n) for n in sorted(changed)},
            },
        )
    return locked


def totp_device_for_enrolment(*, user: User) -> TOTPDevice:
    """The unconfirmed authenticator a user is enrolling (created on first call, reused after)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-id").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)
    return device


@transaction.atomic
def totp_enrol_confirm(*, user: User, device: TOTPDevice, token: str) -> list[str] | None:
    """Confirm enrolment with a first valid code. Returns the new backup codes, or None if the code is wrong."""
    locked = TOTPDevice.objects.select_for_update().get(pk=device.pk, user=user)
    if locked.confirmed or not locked.verify_token(token):
        return None
    locked.confirmed = True
    locked.save(update_fields=["confirmed"])
    # An enrolment replaces any earlier authenticator: only one can be trusted at a time.
    TOTPDevice.objects.filter(user=user).exclude(pk=locked.pk).delete()
    audit_record(
        actor=user, action=AuditAction.TOTP_ENROLLED, target=user, data={"device": locked.name}
    )
    return backup_codes_issue(user=user)


@transaction.atomic
def backup_codes_issue(*, user: User) -> list[str]:
    device, _ = BackupCodeDevice.objects.get_or_create(
        user=user, defaults={"name": "Backup codes", "confirmed": True}
    )
    codes: list[str] = device.issue_codes()
    audit_record(
        actor=user, action=AuditAction.BACKUP_CODES_ISSUED, target=user, data={"count": len(codes)}
    )
    return codes
