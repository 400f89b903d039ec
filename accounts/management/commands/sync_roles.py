from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from accounts.services import role_groups_sync


class Command(BaseCommand):
    help = "Create or refresh the role groups and their back-office model permissions."

    def handle(self, *args: Any, **options: Any) -> None:
        groups = role_groups_sync()
        self.stdout.write(f"{len(groups)} role groups in sync.")
