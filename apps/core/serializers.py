from collections.abc import Mapping
from typing import Any

from rest_framework import serializers


class StrictInputMixin:
    """Refuses what DRF would silently accept: keys the serializer does not know, keys it only
    reads, and numbers or booleans where a string is expected."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            errors: dict[str, list[str]] = {}
            fields: Mapping[str, serializers.Field] = self.fields  # type: ignore[attr-defined]
            for key, value in data.items():
                field = fields.get(key)
                if field is None:
                    errors[key] = ["Unknown field."]
                elif field.read_only:
                    errors[key] = ["This field is read-only."]
                elif (
                    isinstance(field, serializers.CharField)
                    and value is not None
                    and not isinstance(value, str)
                ):
                    errors[key] = [f"Expected a string, got {type(value).__name__}."]
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictSerializer(StrictInputMixin, serializers.Serializer):
    pass


class StrictModelSerializer(StrictInputMixin, serializers.ModelSerializer):
    pass
