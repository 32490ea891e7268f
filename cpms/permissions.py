"""Who may call which REST API method: the role of the tenant a request acts for.

Kept apart from the other API conventions because REST framework imports it while it loads.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, permissions
from rest_framework.request import Request

from .authentication import request_tenant
from .models import Role

ALL_ROLES = frozenset(Role.values)
OPERATOR_ROLES = frozenset({Role.OPERATOR_ADMIN, Role.OPERATOR})
ADMIN_ROLES = frozenset({Role.OPERATOR_ADMIN})


class TenantRolePermission(permissions.BasePermission):
    """The caller must act for an organization, with a role the view allows for the method.

    Views say which roles may read (``read_roles``), write (``write_roles``) and delete
    (``delete_roles``, defaulting to the writers). Objects outside the tenant are never found:
    views read through the tenant's selectors, so those are 404s, not 403s.
    """

    message = "Your role does not allow this."

    def has_permission(self, request: Request, view: Any) -> bool:
        if not (request.user and request.user.is_authenticated):
            raise exceptions.NotAuthenticated()
        tenant = request_tenant(request)
        if tenant is None:
            raise exceptions.PermissionDenied("You are not a member of any organization.")
        read_roles = getattr(view, "read_roles", ALL_ROLES)
        write_roles = getattr(view, "write_roles", OPERATOR_ROLES)
        delete_roles = getattr(view, "delete_roles", write_roles)
        if request.method in permissions.SAFE_METHODS:
            return tenant.role in read_roles
        if request.method == "DELETE":
            return tenant.role in delete_roles
        return tenant.role in write_roles
