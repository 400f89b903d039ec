"""A verification's reason becomes a code and its values (worded in the reader's language); the
reasons of runs finished before keep their recorded English text (code "recorded")."""

from typing import Any

from django.db import migrations, models


def keep_recorded_reasons(apps: Any, schema_editor: Any) -> None:
    runs = apps.get_model("audit", "ChainVerification")
    for run in runs.objects.exclude(reason=""):
        run.reason_code = "recorded"
        run.reason_params = {"text": run.reason}
        run.save(update_fields=["reason_code", "reason_params"])


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0005_verbose_names"),
    ]

    operations = [
        migrations.AddField(
            model_name="chainverification",
            name="reason_code",
            field=models.CharField(blank=True, max_length=32),
        ),
        migrations.AddField(
            model_name="chainverification",
            name="reason_params",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(keep_recorded_reasons, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name="chainverification",
            name="reason",
        ),
    ]
