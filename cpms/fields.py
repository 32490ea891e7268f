"""Serializer fields that accept what the OpenAPI schema says, and nothing more.

REST framework turns numbers into strings and trims surrounding whitespace before it checks
``max_length``, so ``{"name": 12}`` or a value longer than the documented ``maxLength`` would be
accepted; these fields take JSON strings only and check the length as sent.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from rest_framework import serializers
from rest_framework.fields import empty


class _AsSent:
    max_length: int | None

    def run_validation(self, data: Any = empty) -> Any:
        if data is not empty and data is not None and not isinstance(data, str):
            self.fail("invalid")  # type: ignore[attr-defined]
        if isinstance(data, str) and self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)  # type: ignore[attr-defined]
        return super().run_validation(data)  # type: ignore[misc]


class CharField(_AsSent, serializers.CharField):
    pass


class EmailField(_AsSent, serializers.EmailField):
    pass


class RegexField(_AsSent, serializers.RegexField):
    pass


class SlugField(_AsSent, serializers.SlugField):
    pass


class SlugRelatedField(serializers.SlugRelatedField):  # type: ignore[type-arg]
    """A lookup by a text field that refuses a NUL character as a field error: PostgreSQL text
    cannot hold one, so the lookup itself would fail."""

    default_error_messages = {"null_characters": "Null characters are not allowed."}

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and "\x00" in data:
            self.fail("null_characters")
        return super().to_internal_value(data)


class ModelSerializer(serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: CharField,
        models.TextField: CharField,
        models.EmailField: EmailField,
        models.SlugField: SlugField,
    }
