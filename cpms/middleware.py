"""The tenant a request acts for (``request.tenant``), and who may open dashboard pages.

A user with several memberships picks the organization they work in; the choice is kept in the
session and checked against their memberships on every request.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from .tenancy import Tenant, tenant_for_user

# Session key of the organization the user picked; a stale value falls back to their first one.
ORGANIZATION_SESSION_KEY = "cpms_organization_id"

NO_MEMBERSHIP = (
    "Your account is not a member of any organization. "
    "Ask an operator admin of your organization to add you."
)
INTEGRATORS_USE_API = (
    "Integrator accounts use the REST API; the dashboard is for operators and site hosts."
)
OPERATORS_ONLY = "Only operators and operator admins can open this page."
ADMINS_ONLY = "Only operator admins can open this page."


def tenant_for_session(user: Any, session: Any) -> Tenant | None:
    """The tenant of a signed-in user: the organization picked in the session, else the first."""
    if user is None or not user.is_authenticated:
        return None
    picked = session.get(ORGANIZATION_SESSION_KEY) if session is not None else None
    tenant = tenant_for_user(user, picked) if isinstance(picked, int) else None
    return tenant or tenant_for_user(user)


class DashboardRequest(HttpRequest):
    """A request as dashboard views see it (for type checking): the middleware sets these."""

    tenant: Tenant
    htmx: HtmxDetails


class TenantMiddleware:
    """Sets ``request.tenant`` (a Tenant, or None) after authentication."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.tenant = tenant_for_session(request.user, request.session)  # type: ignore[attr-defined]
        return self.get_response(request)


def dashboard_view(
    view: Callable[..., HttpResponse] | None = None,
    *,
    operators_only: bool = False,
    admins_only: bool = False,
) -> Any:
    """Require a signed-in member with dashboard access (and optionally an operator role).

    Anonymous users go to the login page; a member without access gets a 403 page saying why.
    """

    def decorate(func: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(func)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                if getattr(request, "htmx", False):
                    # A part of a page whose session ended: send the whole page to sign in,
                    # rather than swapping the sign-in form into the part.
                    page = request.htmx.current_url_abs_path or "/"  # type: ignore[attr-defined]
                    login = resolve_url(settings.LOGIN_URL)
                    return HttpResponseClientRedirect(f"{login}?{urlencode({'next': page})}")
                return redirect_to_login(request.get_full_path())
            tenant: Tenant | None = getattr(request, "tenant", None)
            if tenant is None:
                raise PermissionDenied(NO_MEMBERSHIP)
            if not tenant.uses_dashboard:
                raise PermissionDenied(INTEGRATORS_USE_API)
            if operators_only and not tenant.is_operator:
                raise PermissionDenied(OPERATORS_ONLY)
            if admins_only and not tenant.is_admin:
                raise PermissionDenied(ADMINS_ONLY)
            return func(request, *args, **kwargs)

        return wrapped

    return decorate(view) if view is not None else decorate
