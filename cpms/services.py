"""Writes of the tenancy app: API tokens (issued, used, revoked)."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from .models import ApiToken, Organization, Role

# Every key starts with this, so a leaked key is easy to recognise (and to scan for).
KEY_PREFIX = "cpms_"
# How many characters of the key are kept in clear to tell tokens apart.
SHOWN_PREFIX_LENGTH = 12
# last_used_at is written at most this often per token, so a busy client costs no write per call.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def api_token_create(
    *,
    organization: Organization,
    name: str,
    role: str = Role.INTEGRATOR,
    sites: Iterable[Any] = (),
    created_by: User | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Issue a token; returns it with the plain key, which is shown once and never stored.

    ``sites`` (Site objects or primary keys of the organization's sites) scope a site-host token.
    """
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            organization=organization,
            name=name,
            role=role,
            prefix=key[:SHOWN_PREFIX_LENGTH],
            key_digest=api_key_digest(key),
            created_by=created_by,
            expires_at=expires_at,
        )
        site_list = list(sites)
        if site_list:
            token.sites.set(site_list)
    return token, key


def api_token_revoke(*, token: ApiToken, revoked_by: User | None = None) -> ApiToken:
    """Refuse the token from now on; the row stays for the audit trail. Idempotent."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.revoked_by = revoked_by
        token.save(update_fields=["revoked_at", "revoked_by"])
    return token


def api_token_touch(*, token: ApiToken, now: datetime | None = None) -> bool:
    """Record that the token was used, unless that was recorded less than a minute ago."""
    now = now or timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return False
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    token.last_used_at = now
    return True
