from typing import Any

from django.db import migrations


def encrypt_passwords(apps: Any, schema_editor: Any) -> None:
    """Passwords stored in plain text become Fernet tokens (ones already encrypted stay)."""
    from routing.crypto import encrypt, is_encrypted

    for name in ("Upstream", "UpstreamCredential"):
        model = apps.get_model("routing", name)
        for pk, password in model.objects.exclude(password="").values_list("pk", "password"):
            if not is_encrypted(password):
                model.objects.filter(pk=pk).update(password=encrypt(password))


def decrypt_passwords(apps: Any, schema_editor: Any) -> None:
    from routing.crypto import decrypt, is_encrypted

    for name in ("Upstream", "UpstreamCredential"):
        model = apps.get_model("routing", name)
        for pk, password in model.objects.exclude(password="").values_list("pk", "password"):
            if is_encrypted(password):
                model.objects.filter(pk=pk).update(password=decrypt(password))


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0004_password_text"),
    ]

    operations = [
        migrations.RunPython(encrypt_passwords, decrypt_passwords),
    ]
