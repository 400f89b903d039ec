"""Ping the Celery workers of each queue family; exit 1 naming any family nobody serves.

python manage.py celery_health [--timeout 5] [--json]
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.celery import app
from operations.workers import family_report


class Command(BaseCommand):
    help = "Ping each queue family's Celery workers; exit 1 if a family has none answering."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        report = family_report(app, timeout=float(options["timeout"]))
        if options["json"]:
            self.stdout.write(json.dumps(report, sort_keys=True))
        else:
            for family, workers in report["families"].items():
                answer = ", ".join(workers) if workers else "NO WORKER ANSWERED"
                self.stdout.write(f"{family}: {answer}")
        missing = [family for family, workers in report["families"].items() if not workers]
        if missing:
            raise CommandError(f"no worker answered for queue family: {', '.join(missing)}")
