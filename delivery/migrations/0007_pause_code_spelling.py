"""The month's-quota pause had two spellings ("QuotaExhausted" from DingTalk's error, and
"quota_exhausted" from the governor); PauseCode keeps the second."""

from __future__ import annotations

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor


def one_spelling(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    plans = apps.get_model("delivery", "DeliveryPlan")
    plans.objects.filter(pause_code="QuotaExhausted").update(pause_code="quota_exhausted")


class Migration(migrations.Migration):
    dependencies = [("delivery", "0006_delivery_batch_unindexed")]

    operations = [migrations.RunPython(one_spelling, migrations.RunPython.noop)]
