import django_filters
from django import forms
from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field


@extend_schema_field(OpenApiTypes.INT)
class IdFilter(django_filters.NumberFilter):
    field_class = forms.IntegerField


class FilterSet(django_filters.FilterSet):
    """A filter on a related record takes its id and, like the list, sees only visible rows: an
    id that is hidden and one that does not exist both match nothing. django-filter's default, a
    choice among every row of the related table, would refuse the missing id (400) and accept
    the hidden one, telling a stranger which ids exist."""

    FILTER_DEFAULTS = {
        **django_filters.FilterSet.FILTER_DEFAULTS,
        models.ForeignKey: {"filter_class": IdFilter},
        models.OneToOneField: {"filter_class": IdFilter},
    }


ORIGIN_HELP = (
    "Where records come from: `local` (published on this node), `peers` (mirrored from peer "
    "nodes), a peer node's id (its base URL), or `all` (the default)."
)


def filter_by_origin(queryset, name: str, value: str):
    value = value.strip().rstrip("/")
    if value in ("", "all"):
        return queryset
    if value == "local":
        return queryset.filter(origin_node="")
    if value == "peers":
        return queryset.exclude(origin_node="")
    return queryset.filter(origin_node=value)


class OriginFilter(django_filters.CharFilter):
    """Filters records by the node they were published on."""

    def __init__(self, **kwargs) -> None:
        super().__init__(method=filter_by_origin, help_text=ORIGIN_HELP, max_length=255, **kwargs)
