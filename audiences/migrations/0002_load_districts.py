from django.db import migrations


def load(apps, schema_editor):
    from audiences.districts import load_districts

    load_districts(apps.get_model("audiences", "District"))


class Migration(migrations.Migration):
    dependencies = [("audiences", "0001_initial")]
    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
