"""The result filters the API and the portal share."""

import django_filters

from apps.core.filters import FilterSet, IdFilter, OriginFilter
from apps.evaluations.models import Result


class ResultFilter(FilterSet):
    benchmark = IdFilter(field_name="benchmark_id")
    model = IdFilter(field_name="model_version__model_id")
    model_version = IdFilter(field_name="model_version_id")
    institution = django_filters.CharFilter(
        field_name="institution__slug", help_text="The institution that paid for the evaluation."
    )
    model_institution = django_filters.CharFilter(
        field_name="model_version__model__institution__slug",
        help_text="The institution that publishes the model.",
    )
    node = IdFilter(field_name="node_id")
    origin = OriginFilter()

    class Meta:
        model = Result
        fields = [
            "benchmark",
            "model",
            "model_version",
            "institution",
            "model_institution",
            "node",
            "origin",
        ]
