"""Per-plan rollups kept by database triggers (delivery.rollup_sql), filled for existing plans."""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

from delivery import rollup_sql


def _install(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    for statement in rollup_sql.install_sql(vendor):
        schema_editor.execute(statement, params=None)
    # Existing plans: their rollups recounted once from their people.
    plan_ids = apps.get_model("delivery", "DeliveryPlan").objects.values_list("pk", flat=True)
    prefix, select = rollup_sql.recount_sql(vendor)
    sql = f"{prefix}INSERT INTO {rollup_sql.TALLY} (plan_id, kind, key, n) {select}"
    for plan_id in plan_ids.iterator():
        schema_editor.execute(
            sql,
            params=[plan_id] * sql.count("%s"),
        )


def _uninstall(apps: Any, schema_editor: Any) -> None:
    for statement in rollup_sql.uninstall_sql(schema_editor.connection.vendor):
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("delivery", "0011_service_window_batch"),
    ]

    operations = [
        migrations.CreateModel(
            name="PlanTally",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("kind", models.CharField(max_length=4)),
                ("key", models.CharField(max_length=40)),
                ("n", models.BigIntegerField()),
                (
                    "plan",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=models.deletion.DO_NOTHING,
                        related_name="+",
                        to="delivery.deliveryplan",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["plan", "kind", "key"], name="plantally_plan_kind_idx")
                ],
            },
        ),
        migrations.RunPython(_install, _uninstall),
    ]
