"""manage.py audit_purge --before YYYY-MM-DD: delete events older than the retention period."""

from __future__ import annotations

import datetime as dt
from argparse import ArgumentParser, ArgumentTypeError
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.maintenance import events_purge
from common.errors import ApplicationError


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ArgumentTypeError(f"{value!r} is not a date in the form YYYY-MM-DD") from None


class Command(BaseCommand):
    help = (
        "Delete audit events from before DATE (local time), which must lie outside the "
        "retention period. Leaves a checkpoint so the remaining chain still verifies, and "
        "records the purge as audit.purged. On PostgreSQL run it as a role allowed to DELETE "
        "from the audit table (see audit/README.md)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--before", type=_date, required=True, metavar="YYYY-MM-DD")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = events_purge(before=options["before"])
        except ApplicationError as exc:
            raise CommandError(exc.message, returncode=2) from None
        if result.checkpoint is None:
            self.stdout.write(f"No events before {result.cutoff.isoformat()}; nothing purged.")
            return
        self.stdout.write(
            f"Purged {result.deleted} events before {result.cutoff.isoformat()}; the chain resumes "
            f"after checkpoint #{result.checkpoint.sequence} ({result.checkpoint.hash})."
        )
