"""OpenAPI schema parts: the API token security scheme and the error responses of every
operation, in the shared error format."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from rest_framework import permissions

from .errors import ErrorSerializer


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "cpms.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "An API token of your organization, sent as `Token <key>`.",
        }


class Schema(AutoSchema):
    """Adds the error responses every operation can give, in the shared error format."""

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)  # type: ignore[arg-type]
        public = any(isinstance(p, permissions.AllowAny) for p in self.view.get_permissions())
        can_be_invalid = (
            self.method != "GET" or self._is_list_view() or bool(self._get_filter_parameters())
        )
        codes = ["400"] if can_be_invalid else []
        if not public:
            codes += ["401", "403"]
        if "{" in self.path or not public:
            codes.append("404")
        if self.method == "DELETE":
            codes.append("409")  # other records still point at it (cpms.errors.InUse)
        if not public:
            codes.append("429")
        for code in codes:
            responses.setdefault(code, self._get_response_for_code(ErrorSerializer, code))
        return responses
