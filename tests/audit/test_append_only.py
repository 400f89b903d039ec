"""PostgreSQL refuses to change or remove audit rows; deleting people leaves the trail intact."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from audit.models import AuditCheckpoint, AuditEvent

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the append-only triggers exist only on PostgreSQL"
)


@pytest.mark.postgres
@postgres_only
def test_update_is_refused(cast_a):
    event = AuditEvent.objects.order_by("sequence").first()
    with pytest.raises(DatabaseError, match="Cannot update or delete"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(target_label="rewritten")
    event.refresh_from_db()
    assert event.target_label != "rewritten"


@pytest.mark.postgres
@postgres_only
def test_delete_is_refused(cast_a):
    count = AuditEvent.objects.count()
    with pytest.raises(DatabaseError, match="Cannot update or delete"), transaction.atomic():
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.count() == count


@pytest.mark.postgres
@postgres_only
def test_raw_sql_update_is_refused(cast_a):
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET actor_label = 'x'")


@pytest.mark.postgres
@postgres_only
def test_truncate_and_checkpoint_guards_are_installed(db):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE NOT t.tgisinternal AND c.relname IN ('audit_auditevent', 'audit_auditcheckpoint') "
            "AND (t.tgtype & 32) <> 0"  # TRIGGER_TYPE_TRUNCATE
        )
        truncate_guards = {row[0] for row in cursor.fetchall()}
    assert truncate_guards == {"audit_auditevent", "audit_auditcheckpoint"}


@pytest.mark.postgres
@postgres_only
def test_checkpoints_cannot_be_rewritten(db):
    from django.utils import timezone

    checkpoint = AuditCheckpoint.objects.create(
        sequence=5, hash="0" * 64, purged_before=timezone.now(), events_deleted=5
    )
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditCheckpoint.objects.filter(pk=checkpoint.pk).update(hash="f" * 64)


def test_deleting_a_user_or_department_would_not_rewrite_their_events():
    from django.db.models import DO_NOTHING

    # SET_NULL would UPDATE protected rows (refused) and change hashed columns (breaking the chain).
    for name in ("actor", "department"):
        field = AuditEvent._meta.get_field(name)
        assert field.remote_field.on_delete is DO_NOTHING
        assert field.db_constraint is False


def test_privilege_statements_revoke_rewrites_from_the_app_role(capsys):
    from django.core.management import call_command

    call_command("audit_db_privileges", "--app-role", "portal_app")
    sql = capsys.readouterr().out
    assert (
        'REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON "audit_auditevent" FROM "portal_app";'
        in sql
    )
    assert 'GRANT SELECT, INSERT ON "audit_auditevent" TO "portal_app";' in sql
