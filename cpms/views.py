"""Dashboard pages of the tenancy app: sign in and out, switching organization, API tokens."""

from __future__ import annotations

from typing import cast
from urllib.parse import urlsplit

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.models import User
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import Resolver404, resolve, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from .forms import ApiTokenForm
from .middleware import ORGANIZATION_SESSION_KEY, DashboardRequest, dashboard_view
from .models import ApiToken, Membership, Organization
from .services import api_token_create, api_token_revoke


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    next_page = "login"


@require_POST
def organization_switch(request: DashboardRequest) -> HttpResponse:
    """Work in another of the user's organizations from now on (kept in the session)."""
    if not request.user.is_authenticated:
        return HttpResponseRedirect(reverse("login"))
    try:
        organization_id = int(request.POST.get("organization", ""))
    except ValueError:
        raise Http404("No such organization.") from None
    membership = (
        Membership.objects.filter(user=request.user, organization_id=organization_id)
        .select_related("organization")
        .first()
    )
    if membership is None:
        raise Http404("No such organization.")
    request.session[ORGANIZATION_SESSION_KEY] = organization_id
    messages.info(request, f"Now working in {membership.organization.name}.")
    return HttpResponseRedirect(_section_of(request.POST.get("next", ""), request.get_host()))


def _section_of(back: str, host: str) -> str:
    """The list page of the section ``back`` was in: an object of the previous organization
    would be a 404 in the new one."""
    overview = reverse("dashboard:overview")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={host}):
        return overview
    section = urlsplit(back).path.strip("/").split("/")[0]
    try:
        resolve(f"/{section}/")
    except Resolver404:
        return overview
    return f"/{section}/" if section else overview


def _api_tokens(request: DashboardRequest) -> list[ApiToken]:
    return list(
        ApiToken.objects.filter(organization_id=request.tenant.organization_id)
        .select_related("created_by", "revoked_by")
        .prefetch_related("sites")
        .order_by("revoked_at", "-created_at")
    )


@dashboard_view(admins_only=True)
def api_token_list(request: DashboardRequest) -> HttpResponse:
    """The organization's API tokens; a new token's key is shown once, right after it is made."""
    tenant = request.tenant
    form = ApiTokenForm(request.POST or None, tenant=tenant)
    new_key = ""
    status = 200
    if request.method == "POST":
        if form.is_valid():
            token, new_key = api_token_create(
                organization=Organization.objects.get(pk=tenant.organization_id),
                name=form.cleaned_data["name"],
                role=form.cleaned_data["role"],
                sites=form.cleaned_data["sites"] or (),
                expires_at=form.cleaned_data["expires_at"],
                created_by=cast(User, request.user),
            )
            messages.success(request, f"API token {token.name} created. Copy its key now.")
            form = ApiTokenForm(tenant=tenant)
        else:
            status = 400
    response = render(
        request,
        "cpms/api_tokens.html",
        {"form": form, "tokens": _api_tokens(request), "new_key": new_key},
        status=status,
    )
    # The page may carry a secret: never keep it in a cache.
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@dashboard_view(admins_only=True)
def api_token_revoke_view(request: DashboardRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(
        ApiToken.objects.filter(organization_id=request.tenant.organization_id),
        pk=pk,
    )
    api_token_revoke(token=token, revoked_by=cast(User, request.user))
    messages.success(request, f"API token {token.name} revoked.")
    return HttpResponseRedirect(reverse("api_tokens"))
