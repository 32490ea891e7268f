"""API tokens in the Django admin: looked at and revoked there, never issued (the key could not
be shown) and never showing their digest."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.test import Client

from cpms.models import ApiToken, Organization
from cpms.services import api_token_create
from tests.cpms.api_world import token_client


def test_the_admin_revokes_tokens_and_never_issues_them(db: Any) -> None:
    organization = Organization.objects.create(name="Acme", slug="acme")
    token, key = api_token_create(organization=organization, name="ERP")
    admin_user = User.objects.create_superuser("root", password="a-long-password-1")
    client = Client()
    client.force_login(admin_user)

    assert client.get("/admin/cpms/apitoken/add/").status_code == 403
    page = client.get(f"/admin/cpms/apitoken/{token.pk}/change/").content.decode()
    assert token.prefix in page and token.key_digest not in page

    response = client.post(
        "/admin/cpms/apitoken/",
        {"action": "revoke", "_selected_action": [str(token.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    token.refresh_from_db()
    assert token.revoked_at is not None and token.revoked_by == admin_user
    assert token_client(key).get("/api/v1/organizations/").status_code == 401
    assert ApiToken.objects.count() == 1
