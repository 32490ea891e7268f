"""Who may see what: the tenant a request acts for, resolved once per request.

Every selector and view takes a ``Tenant`` and filters by it; an object outside it is a 404,
never its data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .models import Membership, Role


@dataclass(frozen=True, slots=True)
class Tenant:
    organization_id: int
    role: str
    # The sites a site host looks after; None means every site of the organization.
    site_ids: frozenset[int] | None = None
    user_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == Role.OPERATOR_ADMIN

    @property
    def is_operator(self) -> bool:
        return self.role in (Role.OPERATOR_ADMIN, Role.OPERATOR)

    @property
    def is_site_host(self) -> bool:
        return self.role == Role.SITE_HOST

    @property
    def uses_dashboard(self) -> bool:
        return self.role != Role.INTEGRATOR


def tenant_for_membership(membership: Membership) -> Tenant:
    site_ids = (
        frozenset(membership.sites.values_list("pk", flat=True))
        if membership.role == Role.SITE_HOST
        else None
    )
    return Tenant(
        organization_id=membership.organization_id,
        role=membership.role,
        site_ids=site_ids,
        user_id=membership.user_id,
    )


def tenant_for_user(user: Any, organization_id: int | None = None) -> Tenant | None:
    """The user's tenant in the given organization, or in their first one; None without one."""
    if user is None or not user.is_authenticated:
        return None
    memberships = Membership.objects.filter(user=user).order_by("organization_id")
    if organization_id is not None:
        memberships = memberships.filter(organization_id=organization_id)
    membership = memberships.first()
    return tenant_for_membership(membership) if membership else None
