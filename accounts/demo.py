"""Demo and training data: departments, one user per role, authenticators for demo logins."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services
from accounts.models import Department, Role
from audiences.importing import recipients_import
from audiences.models import District, Recipient, Segment
from audiences.services import SegmentInput, segment_create
from dingtalk.simulator.config import SimulatorConfig, demo_apps
from dingtalk.simulator.directory import DISTRICTS as SIM_DISTRICTS
from dingtalk.simulator.directory import Directory
from integrations.services.warning_mappings import warning_mappings_seed
from notices.templating import templates_seed

DEMO_PASSWORD = "Demo-Portal-2026"  # noqa: S105 - printed for demos; demo mode only


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


# Demo recipients are real members of the simulator's generated directory (same seed and
# size as `python -m dingtalk.simulator` uses by default), so demo sends reach its phones.
DEMO_RECIPIENTS = 300
FIRST_RECIPIENT_INDEX = 10  # indexes 1-6 are the demo staff
LANGUAGES = ("zh-hant", "en", "both")
RISKS = ("low", "low", "medium", "high")
FUNCTIONS = ("frontline", "logistics", "public", "public")


def demo_recipients_csv(code: str) -> bytes:
    """The department's demo recipients as an import file, built from the simulator's directory."""
    import csv
    import io

    import phonenumbers

    config = SimulatorConfig()
    app = next(a for a in demo_apps() if a.code == code)
    directory = Directory(code, config.directory_size, config.directory_seed, app.name)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["dingtalk_user_id", "name", "mobile", "language", "district", "function_tag", "risk_level"]
    )
    for index in range(FIRST_RECIPIENT_INDEX, FIRST_RECIPIENT_INDEX + DEMO_RECIPIENTS):
        user = directory.get_user(directory.userid_for(index))
        if user is None:
            continue
        number = phonenumbers.parse(user.mobile, "HK")
        # A few generated numbers fall in blocks libphonenumber does not know as mobile.
        if phonenumbers.number_type(number) != phonenumbers.PhoneNumberType.MOBILE:
            continue
        district = SIM_DISTRICTS[(user.dept_id_list[0] % 100) % len(SIM_DISTRICTS)][0]
        writer.writerow(
            [
                user.userid,
                user.name,
                user.mobile,
                LANGUAGES[index % 3],
                district,
                FUNCTIONS[index % 4],
                RISKS[index % 4],
            ]
        )
    return out.getvalue().encode()


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
    # The simulator's demo apps are the one source of departments, agent ids and secrets.
    for app in demo_apps():
        secret_path = secrets_dir / demo_secret_file(app.code)
        if not secret_path.exists():
            secret_path.write_text(f"{app.app_secret}\n", encoding="utf-8")
            secret_path.chmod(0o600)
        if not Department.objects.filter(code=app.code).exists():
            services.department_create(
                actor=None,
                code=app.code,
                name_en=app.name,
                name_zh=app.name_tc,
                dingtalk_agent_id=app.agent_id,
                dingtalk_app_key=app.app_key,
                dingtalk_secret_ref=f"file:{secret_path}",
                dingtalk_edition=app.edition,
            )
            departments_created += 1
    users_created = 0
    logins: list[tuple[str, str, str]] = []
    for code in STAFFED:
        department = Department.objects.get(code=code)
        for number, (suffix, title, role) in enumerate(DEMO_ROLES, start=1):
            # Demo staff are members of the simulated directory, so approver alerts reach an inbox.
            dingtalk_user_id = f"{code.lower()}{number:07d}"
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
                    dingtalk_user_id=dingtalk_user_id,
                )
                users_created += 1
            else:
                services.membership_grant(
                    actor=None,
                    user=user,
                    department=department,
                    role=role,
                    dingtalk_user_id=dingtalk_user_id,
                )
            if not TOTPDevice.objects.filter(user=user, confirmed=True).exists():
                TOTPDevice.objects.create(user=user, name="Demo authenticator", confirmed=True)
            logins.append((username, code, str(Role(role).label)))
    for code in STAFFED:
        _seed_workflows(Department.objects.get(code=code))
    for department in Department.objects.filter(code__in=[a.code for a in demo_apps()]):
        demo_segments_seed(department)
    return SeedReport(departments_created, users_created, logins)


def _seed_workflows(department: Department) -> None:
    """Templates, warning mappings and recipients, through each app's own services."""
    templates_seed(actor=None, department=department)
    warning_mappings_seed(actor=None, department=department)
    if not Recipient.objects.filter(department=department).exists():
        report = recipients_import(
            actor=None,
            department=department,
            data=demo_recipients_csv(department.code),
            file_name=f"demo-{department.code.lower()}.csv",
        )
        if not report.ok:
            problems = report.file_error or "; ".join(str(e) for e in report.errors[:3])
            raise RuntimeError(f"Demo recipients for {department.code} did not import: {problems}")


# The districts a department's by-district demo segments cover when it has no recipients yet.
FALLBACK_DISTRICTS = ("ST", "CW", "YL")


def demo_segments_seed(department: Department) -> list[Segment]:
    """Useful segments in one department, made through audiences' own service (audited):
    everyone subscribed, high risk, frontline staff, and one per district where most of its
    recipients live. A segment that exists by name is left alone."""
    counts: dict[int, int] = {}
    for district_id in Recipient.objects.filter(department=department).values_list(
        "district_id", flat=True
    ):
        if district_id is not None:
            counts[district_id] = counts.get(district_id, 0) + 1
    busiest = sorted(counts, key=lambda pk: (-counts[pk], pk))[:3]
    districts = list(District.objects.filter(pk__in=busiest)) or list(
        District.objects.filter(code__in=FALLBACK_DISTRICTS)
    )
    wanted = [
        SegmentInput(
            name="Everyone subscribed 所有訂閱者",
            description="Every subscribed recipient of the department.",
        ),
        SegmentInput(
            name="High risk 高風險人士",
            description="Recipients marked high risk: they need notices first.",
            risk_levels=["high"],
        ),
        SegmentInput(
            name="Frontline staff 前線人員",
            description="Recipients whose function is frontline work.",
            function_tags=["frontline"],
        ),
    ]
    wanted += [
        SegmentInput(
            name=f"{d.name_en} {d.name_zh}",
            description=f"Recipients living in {d.name_en}.",
            districts=[d],
        )
        for d in sorted(districts, key=lambda d: d.code)
    ]
    existing = set(Segment.objects.filter(department=department).values_list("name", flat=True))
    return [
        segment_create(actor=None, department=department, data=data)
        for data in wanted
        if data.name not in existing
    ]
