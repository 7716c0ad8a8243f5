from collections.abc import Mapping
from typing import Any

from rest_framework import serializers
from rest_framework.fields import empty

from apps.core.dates import DATE_RANGE_TEXT, validate_date_in_range


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


class PatchInputMixin:
    """The input of a PATCH: any top-level field may be left out, and one left out keeps its
    value (no default applies). Unlike DRF's partial mode, nested items (a paper's authors) are
    still checked whole."""

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()  # type: ignore[misc]
        for field in fields.values():
            field.required = False
            field.default = empty
        return fields


class BoundedDateField(serializers.DateField):
    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", f"A date {DATE_RANGE_TEXT}.")
        super().__init__(validators=[validate_date_in_range], **kwargs)


class BoundedDateTimeField(serializers.DateTimeField):
    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", f"A time {DATE_RANGE_TEXT}.")
        super().__init__(validators=[validate_date_in_range], **kwargs)
