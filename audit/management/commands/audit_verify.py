"""manage.py audit_verify: re-walk the whole hash chain; exit 1 and name the first bad event."""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.anchors import AnchorFileError, anchor_path, anchors_verify, read_anchors
from audit.maintenance import chain_verify_and_record
from audit.verification import chain_verify


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain and name the first event that does not match."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--anchors",
            nargs="?",
            const="",
            default=None,
            metavar="FILE",
            help="Also check the chain against the daily anchors (default AUDIT_ANCHOR_FILE) "
            "and name the first day that disagrees.",
        )
        parser.add_argument(
            "--accept-restore",
            action="store_true",
            help="With --anchors: anchors newer than the chain's head do not fail the check "
            "(after restoring a backup older than them).",
        )
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
        if options["anchors"] is not None:
            path = Path(options["anchors"]) if options["anchors"] else anchor_path()
            try:
                found = read_anchors(path)
            except AnchorFileError as exc:
                raise CommandError(str(exc), returncode=1) from None
            checked = anchors_verify(found, accept_restore=options["accept_restore"])
            if not checked.ok:
                raise CommandError(checked.message, returncode=1)
            self.stdout.write(checked.message)
