"""Each event keeps its content hash (exports carry it, so a file checks its own chain).

The existing events are filled in here: the one UPDATE of the trail outside a purge, done
with the append-only trigger ignored inside this migration's transaction only (as the purge
does, pgtrigger.ignore), and only on the new column. Version 1 events (hashed before the
content-hash scheme) keep an empty content hash. audit_append then stores the hash it links.
"""

from typing import Any

import pgtrigger
from django.db import migrations, models

from audit.chain import APPEND_FUNCTION_SQL, HASHED_FIELDS, content_hash, legacy_event_hash

CHUNK = 5000


def fill_content_hashes(apps: Any, schema_editor: Any) -> None:
    events = apps.get_model("audit", "AuditEvent")
    after = 0
    with pgtrigger.ignore("audit.AuditEvent:append_only"):
        while True:
            rows = list(
                events.objects.filter(sequence__gt=after)
                .order_by("sequence")
                .values("id", *HASHED_FIELDS, "hash")[:CHUNK]
            )
            if not rows:
                break
            changed = [
                events(id=row["id"], content_hash=content_hash(row))
                for row in rows
                if legacy_event_hash(row) != row["hash"]
            ]
            events.objects.bulk_update(changed, ["content_hash"])
            after = rows[-1]["sequence"]


def store_in_append(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(APPEND_FUNCTION_SQL)


class Migration(migrations.Migration):
    dependencies = [("audit", "0006_verification_reason_code")]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="content_hash",
            field=models.CharField(
                blank=True,
                default="",
                editable=False,
                max_length=64,
                verbose_name="content hash",
            ),
        ),
        migrations.RunPython(fill_content_hashes, migrations.RunPython.noop),
        migrations.RunPython(store_in_append, migrations.RunPython.noop),
    ]
