from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accounts.demo import DEMO_PASSWORD, seed_demo


class Command(BaseCommand):
    help = "Create demo departments, one user per role and district reference data (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.PORTAL_DEMO_MODE:
            raise CommandError(
                "seed_demo creates known passwords; it runs only with PORTAL_DEMO_MODE on."
            )
        report = seed_demo()
        self.stdout.write(
            f"Demo data ready: {report.departments_created} departments and {report.users_created} users created."
        )
        self.stdout.write(f"Demo logins (password for all: {DEMO_PASSWORD}):")
        for username, code, role in report.logins:
            self.stdout.write(f"  {username:<18} {code:<5} {role}")
        self.stdout.write(
            "Current TOTP code for a demo user:  .venv/bin/python manage.py demo_totp USERNAME"
        )
