"""manage.py audit_db_privileges --app-role ROLE: print the SQL that makes the trail append-only by rights."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand
from django.db import connection

from audit.models import AuditCheckpoint, AuditEvent


def privilege_sql(*, app_role: str, maintenance_role: str) -> str:
    """GRANT/REVOKE statements for PostgreSQL; a database owner or superuser runs them.

    The triggers stop UPDATE/DELETE/TRUNCATE, but any role that can run SQL could also switch
    pgtrigger's ignore setting on; taking the rights away closes that door for the application.
    """
    quote = connection.ops.quote_name
    app, maint = quote(app_role), quote(maintenance_role)
    lines = [
        f"-- Run as the database owner. Application role: {app_role}; purge role: {maintenance_role}."
    ]
    for model in (AuditEvent, AuditCheckpoint):
        table = quote(model._meta.db_table)
        lines += [
            f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {table} FROM {app};",
            f"GRANT SELECT, INSERT ON {table} TO {app};",
            f"GRANT SELECT, INSERT, DELETE ON {table} TO {maint};",
        ]
    sequence = quote(f"{AuditEvent._meta.db_table}_id_seq")
    lines.append(f"GRANT USAGE ON SEQUENCE {sequence} TO {app}, {maint};")
    sequence = quote(f"{AuditCheckpoint._meta.db_table}_id_seq")
    lines.append(f"GRANT USAGE ON SEQUENCE {sequence} TO {maint};")
    lines.append(
        "-- The application role must not own these tables (an owner keeps every right): "
        "make the migration role the owner, e.g. ALTER TABLE ... OWNER TO portal_owner;"
    )
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Print the GRANT/REVOKE statements that leave the application role unable to alter the audit trail."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--app-role", default="portal_app")
        parser.add_argument("--maintenance-role", default="portal_audit_admin")

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(
            privilege_sql(
                app_role=options["app_role"], maintenance_role=options["maintenance_role"]
            )
        )
