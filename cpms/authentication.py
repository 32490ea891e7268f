"""REST API authentication: ``Authorization: Token <key>`` with per-client, organization-scoped
API tokens, and the tenant a request acts for (from its token or its signed-in user)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from .models import ApiToken, Role
from .services import api_key_digest, api_token_touch
from .tenancy import Tenant, tenant_for_user

KEYWORD = "Token"


class TokenUser:
    """The principal behind an API token: authenticated, but not a Django user."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, token: ApiToken):
        self.token = token
        self.username = f"token:{token.prefix}"

    def __str__(self) -> str:
        return self.username

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False


def tenant_for_api_token(token: ApiToken) -> Tenant:
    site_ids = (
        frozenset(site.pk for site in token.sites.all()) if token.role == Role.SITE_HOST else None
    )
    return Tenant(organization_id=token.organization_id, role=token.role, site_ids=site_ids)


class ApiTokenAuthentication(BaseAuthentication):
    """``Authorization: Token <key>``; no header passes to the next authentication class."""

    def authenticate(self, request: Request) -> tuple[TokenUser, ApiToken] | None:
        header = get_authorization_header(request).split()
        if not header or header[0].lower() != KEYWORD.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: send 'Token <key>' with the key and no spaces in it."
            )
        try:
            key = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(
                "The API key has characters a key never has."
            ) from None
        return self.authenticate_key(key)

    def authenticate_key(self, key: str) -> tuple[TokenUser, ApiToken]:
        token = (
            ApiToken.objects.select_related("organization")
            .prefetch_related("sites")
            .filter(key_digest=api_key_digest(key))
            .first()
        )
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("This API token has been revoked.")
        now = timezone.now()
        if token.expires_at is not None and token.expires_at <= now:
            raise exceptions.AuthenticationFailed("This API token has expired.")
        api_token_touch(token=token, now=now)
        return TokenUser(token), token

    def authenticate_header(self, request: Request) -> str:
        # Makes unauthenticated requests a 401 with a challenge rather than a 403.
        return KEYWORD


def request_tenant(request: Any) -> Tenant | None:
    """Who the request acts for: its API token's tenant, or its signed-in user's; cached."""
    if hasattr(request, "_cpms_tenant"):
        cached: Tenant | None = request._cpms_tenant
        return cached
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiToken):
        tenant: Tenant | None = tenant_for_api_token(auth)
    else:
        # The dashboard may have resolved the user's current organization already.
        tenant = getattr(getattr(request, "_request", request), "tenant", None)
        if not isinstance(tenant, Tenant):
            tenant = tenant_for_user(getattr(request, "user", None))
    request._cpms_tenant = tenant
    return tenant
