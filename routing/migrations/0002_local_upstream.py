"""The built-in CSMS as the upstream named ``local``."""

from typing import Any

from django.db import migrations


def create_local(apps: Any, schema_editor: Any) -> None:
    Upstream = apps.get_model("routing", "Upstream")
    Upstream.objects.get_or_create(name="local", defaults={"url": "", "ocpp_versions": []})


class Migration(migrations.Migration):
    dependencies = [("routing", "0001_initial")]

    operations = [migrations.RunPython(create_local, migrations.RunPython.noop)]
