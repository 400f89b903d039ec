"""manage.py audit_verify: re-walk the whole hash chain; exit 1 and name the first bad event."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.maintenance import chain_verify_and_record
from audit.verification import chain_verify


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain and name the first event that does not match."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--no-record",
            action="store_true",
            help="Do not append an audit.verified event (for read-only database roles).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["no_record"]:
            report = chain_verify()
        else:
            report = chain_verify_and_record(actor_label="system (audit_verify)")
        if not report.ok:
            raise CommandError(report.message, returncode=1)
        self.stdout.write(report.message)
