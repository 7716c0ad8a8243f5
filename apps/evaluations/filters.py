"""The result filters the API and the portal share."""

import django_filters

from apps.evaluations.models import Result


class ResultFilter(django_filters.FilterSet):
    benchmark = django_filters.NumberFilter(field_name="benchmark_id")
    model = django_filters.NumberFilter(field_name="model_version__model_id")
    model_version = django_filters.NumberFilter(field_name="model_version_id")
    institution = django_filters.CharFilter(
        field_name="institution__slug", help_text="The institution that paid for the evaluation."
    )
    model_institution = django_filters.CharFilter(
        field_name="model_version__model__institution__slug",
        help_text="The institution that publishes the model.",
    )
    node = django_filters.NumberFilter(field_name="node_id")

    class Meta:
        model = Result
        fields = ["benchmark", "model", "model_version", "institution", "model_institution", "node"]
