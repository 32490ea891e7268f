from django.db import migrations, models


class Migration(migrations.Migration):
    """Room for encrypted passwords (Fernet tokens are longer than the passwords they hold)."""

    dependencies = [
        ("routing", "0003_change_organization"),
    ]

    operations = [
        migrations.AlterField(
            model_name="upstream",
            name="password",
            field=models.TextField(blank=True),
        ),
        migrations.AlterField(
            model_name="upstreamcredential",
            name="password",
            field=models.TextField(),
        ),
    ]
