"""Test helpers: the named cast of staff and OTP-verified clients (used by tests/ and bench/).

Realistic state is built by calling our services, never by writing rows behind their back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services
from accounts.auth import LOGIN_AT_SESSION_KEY
from accounts.models import Department, Role

TEST_PASSWORD = "correct horse battery staple 2026"  # noqa: S105 - test fixtures only


@dataclass
class Cast:
    department: Department
    pr_officer: User
    supervisor: User
    supervisor2: User
    department_admin: User
    auditor: User
    system_admin: User

    def by_role(self, role: str) -> User:
        users: dict[str, User] = {
            Role.PR_OFFICER: self.pr_officer,
            Role.SUPERVISOR: self.supervisor,
            Role.DEPARTMENT_ADMIN: self.department_admin,
            Role.AUDITOR: self.auditor,
            Role.SYSTEM_ADMIN: self.system_admin,
        }
        return users[role]


def make_cast(code: str, name_en: str, name_zh: str, agent_id: int) -> Cast:
    department = services.department_create(
        actor=None, code=code, name_en=name_en, name_zh=name_zh, dingtalk_agent_id=agent_id
    )
    prefix = code.lower()

    numbers = {
        "officer": 1,
        "supervisor": 2,
        "supervisor2": 3,
        "admin": 4,
        "auditor": 5,
        "sysadmin": 6,
    }

    def staff(suffix: str, role: str) -> User:
        return services.staff_create(
            actor=None,
            username=f"{prefix}.{suffix}",
            full_name=f"{suffix.title()} {code}",
            email=f"{prefix}.{suffix}@example.gov.hk",
            department=department,
            role=role,
            password=TEST_PASSWORD,
            # Members of the simulator's generated directory for this department's app.
            dingtalk_user_id=f"{prefix}{numbers[suffix]:07d}",
        )

    return Cast(
        department=department,
        pr_officer=staff("officer", Role.PR_OFFICER),
        supervisor=staff("supervisor", Role.SUPERVISOR),
        supervisor2=staff("supervisor2", Role.SUPERVISOR),
        department_admin=staff("admin", Role.DEPARTMENT_ADMIN),
        auditor=staff("auditor", Role.AUDITOR),
        system_admin=staff("sysadmin", Role.SYSTEM_ADMIN),
    )


def give_authenticator(user: User) -> TOTPDevice:
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    return device or TOTPDevice.objects.create(user=user, name="test authenticator", confirmed=True)


def verified_client_for(user: User, client: Client | None = None) -> Client:
    """A client whose session passed password and TOTP, as after a real login."""
    client = client or Client()
    device = give_authenticator(user)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session[LOGIN_AT_SESSION_KEY] = time.time()
    session.save()
    return client


def unverified_client_for(user: User, *, authenticator: bool = True) -> Client:
    """A client past the password step only (``authenticator=False``: a user without one yet
    stays without, as a newcomer who must enrol)."""
    client = Client()
    if authenticator:
        give_authenticator(user)
    client.force_login(user)
    session = client.session
    session[LOGIN_AT_SESSION_KEY] = time.time()
    session.save()
    return client
