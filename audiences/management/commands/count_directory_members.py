"""manage.py count_directory_members [CODE ...]: count each department's DingTalk members.

What an organisation- or department-wide send reaches (audiences.membercount); recipients are
left as they are. Without codes, every active department with a DingTalk app is counted; a
department whose directory cannot be read is reported, and the command then exits non-zero.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Department
from audiences.membercount import directory_members_count
from common.errors import ApplicationError
from dingtalk.errors import DingTalkError


class Command(BaseCommand):
    help = "Count the members of each department's DingTalk organisation and departments."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("codes", nargs="*", help="Department codes, e.g. WSD (default: all)")

    def handle(self, *args: Any, **options: Any) -> None:
        departments = Department.objects.filter(is_active=True).exclude(dingtalk_app_key="")
        if options["codes"]:
            departments = departments.filter(code__in=options["codes"])
        failed = []
        for department in departments:
            try:
                counts = directory_members_count(department)
            except (ApplicationError, DingTalkError, OSError, ValueError) as exc:
                self.stderr.write(f"{department.code}: not counted ({type(exc).__name__})")
                failed.append(department.code)
                continue
            self.stdout.write(f"{department.code}: {counts.total} members")
        if failed:
            raise CommandError(f"Not counted: {', '.join(failed)}")
