from django.db import migrations

from audit.chain import APPEND_FUNCTION_SQL


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(APPEND_FUNCTION_SQL)


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "DROP FUNCTION IF EXISTS audit_append(bigint, timestamptz, integer, varchar, varchar, "
            "bigint, varchar, varchar, varchar, varchar, jsonb, uuid, inet, boolean, varchar)"
        )


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_locked_head")]

    operations = [migrations.RunPython(create_function, drop_function)]
