"""What every dashboard page's layout needs: the tenant and the organizations the user can switch to."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from .models import Membership


def dashboard(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)

    def memberships() -> list[Membership]:
        if user is None or not user.is_authenticated:
            return []
        return list(Membership.objects.filter(user=user).select_related("organization"))

    return {
        "tenant": getattr(request, "tenant", None),
        "memberships": SimpleLazyObject(memberships),
        # The first path segment names the navigation entry to mark as current.
        "section": request.path.strip("/").split("/")[0] or "overview",
    }
