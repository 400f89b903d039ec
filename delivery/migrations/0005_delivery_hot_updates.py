"""Let state changes of delivery rows be HOT updates on PostgreSQL (see Delivery.Meta)."""

from __future__ import annotations

from typing import Any

from django.db import migrations


def _fillfactor(value: int | None) -> Any:
    def run(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        table = schema_editor.quote_name("delivery_delivery")
        if value is None:
            schema_editor.execute(f"ALTER TABLE {table} RESET (fillfactor)")
        else:
            schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = {int(value)})")

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("delivery", "0004_delivery_lean_indexes"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="delivery",
            name="delivery_plan_state_idx",
        ),
        migrations.RunPython(_fillfactor(50), _fillfactor(None)),
    ]
