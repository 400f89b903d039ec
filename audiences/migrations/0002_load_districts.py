from django.db import migrations


def load(apps, schema_editor):
    from audiences.districts import DISTRICTS

    District = apps.get_model("audiences", "District")
    for row in DISTRICTS:
        District.objects.update_or_create(
            code=row.code,
            defaults={
                "eac_letter": row.eac,
                "name_en": row.name_en,
                "name_zh": row.name_zh,
                "region": row.region,
                "hko_place": row.hko_place,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("audiences", "0001_initial")]
    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
