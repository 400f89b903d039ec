"""Demo and training data: departments, one user per role, authenticators for demo logins."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services
from accounts.models import Department, Edition, Role

DEMO_PASSWORD = "Demo-Portal-2026"  # noqa: S105 - printed for demos; demo mode only


@dataclass(frozen=True)
class DemoDepartment:
    code: str
    name_en: str
    name_zh: str
    agent_id: int


DEMO_DEPARTMENTS: tuple[DemoDepartment, ...] = (
    DemoDepartment("HKO", "Hong Kong Observatory", "香港天文台", 3001),
    DemoDepartment("FEHD", "Food and Environmental Hygiene Department", "食物環境衞生署", 3002),
    DemoDepartment("WSD", "Water Supplies Department", "水務署", 3003),
    DemoDepartment("CHP", "Centre for Health Protection", "衞生防護中心", 3004),
    DemoDepartment("FSD", "Fire Services Department", "消防處", 3005),
    DemoDepartment("DSD", "Drainage Services Department", "渠務署", 3006),
    DemoDepartment("TD", "Transport Department", "運輸署", 3007),
    DemoDepartment("HAD", "Home Affairs Department", "民政事務總署", 3008),
)

# Departments that get a full cast of demo staff.
STAFFED = ("HKO", "WSD", "CHP")

DEMO_ROLES: tuple[tuple[str, str, str], ...] = (
    ("officer", "PR Officer", Role.PR_OFFICER),
    ("supervisor", "Supervisor One", Role.SUPERVISOR),
    ("supervisor2", "Supervisor Two", Role.SUPERVISOR),
    ("admin", "Department Admin", Role.DEPARTMENT_ADMIN),
    ("auditor", "Auditor", Role.AUDITOR),
    ("sysadmin", "System Administrator", Role.SYSTEM_ADMIN),
)


def demo_secret_file(code: str) -> str:
    return f"dingtalk-{code.lower()}.secret"


@dataclass(frozen=True)
class SeedReport:
    departments_created: int
    users_created: int
    logins: list[tuple[str, str, str]]


@transaction.atomic
def seed_demo() -> SeedReport:
    """Create what is missing; leave what exists alone (safe to run on every `make run`)."""
    services.role_groups_sync()
    secrets_dir = settings.DINGTALK_SECRETS_DIR
    secrets_dir.mkdir(parents=True, exist_ok=True)
    departments_created = 0
    for spec in DEMO_DEPARTMENTS:
        secret_path = secrets_dir / demo_secret_file(spec.code)
        if not secret_path.exists():
            secret_path.write_text(f"demo-secret-{spec.code.lower()}\n", encoding="utf-8")
            secret_path.chmod(0o600)
        if not Department.objects.filter(code=spec.code).exists():
            services.department_create(
                actor=None,
                code=spec.code,
                name_en=spec.name_en,
                name_zh=spec.name_zh,
                dingtalk_agent_id=spec.agent_id,
                dingtalk_app_key=f"ding-demo-{spec.code.lower()}",
                dingtalk_secret_ref=f"file:{secret_path}",
                dingtalk_edition=Edition.PROFESSIONAL,
            )
            departments_created += 1
    users_created = 0
    logins: list[tuple[str, str, str]] = []
    for code in STAFFED:
        department = Department.objects.get(code=code)
        for suffix, title, role in DEMO_ROLES:
            username = f"{code.lower()}.{suffix}"
            user = User.objects.filter(username=username).first()
            if user is None:
                user = services.staff_create(
                    actor=None,
                    username=username,
                    full_name=f"{title} ({code})",
                    email=f"{username}@demo.gov.hk.invalid",
                    department=department,
                    role=role,
                    password=DEMO_PASSWORD,
                )
                users_created += 1
            else:
                services.membership_grant(actor=None, user=user, department=department, role=role)
            if not TOTPDevice.objects.filter(user=user, confirmed=True).exists():
                TOTPDevice.objects.create(user=user, name="Demo authenticator", confirmed=True)
            logins.append((username, code, Role(role).label))
    return SeedReport(departments_created, users_created, logins)
