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
