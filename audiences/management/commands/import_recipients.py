"""manage.py import_recipients FILE --department CODE [--dry-run]: the bulk path for very large files."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import Department
from audiences.importing import recipients_import
from audiences.models import FileFormat


class Command(BaseCommand):
    help = (
        "Import a recipient CSV/XLSX file into a department: every row valid, or nothing written."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--department", required=True, help="Department code, e.g. WSD")
        parser.add_argument("--dry-run", action="store_true", help="Check and count; write nothing")
        parser.add_argument(
            "--json", action="store_true", help="Print the report as one JSON object"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        department = Department.objects.filter(code=options["department"], is_active=True).first()
        if department is None:
            raise CommandError(f"No active department {options['department']!r}.")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}") from None
        started = time.monotonic()
        report = recipients_import(
            actor=None,
            department=department,
            data=data,
            file_name=path.name,
            file_format=FileFormat.XLSX if path.suffix.lower() == ".xlsx" else FileFormat.CSV,
            dry_run=options["dry_run"],
        )
        elapsed = time.monotonic() - started
        if options["json"]:
            errors = [e.as_dict() for e in report.errors]
            self.stdout.write(
                json.dumps(
                    {
                        **report.as_dict(),
                        "errors": errors,
                        "errors_left_off": report.error_count - len(errors),
                        "seconds": round(elapsed, 2),
                    },
                    ensure_ascii=False,
                )
            )
        else:
            for error in report.errors:
                self.stderr.write(str(error))
            if report.error_count > len(report.errors):
                self.stderr.write(
                    f"... and {report.error_count - len(report.errors)} more invalid rows"
                )
            self.stdout.write(
                f"{report.total} rows: {report.new} new, {report.updated} updated, {report.unchanged} unchanged, "
                f"{report.error_count} invalid ({elapsed:.1f} s)."
            )
        if not report.ok:
            raise CommandError(
                report.file_error or "Nothing was written: fix the rows above and run again."
            )
        if not options["json"]:
            self.stdout.write("Dry run: nothing written." if report.dry_run else "Imported.")
