from rest_framework import serializers

from apps.accounts.models import Institution


class InstitutionSlugField(serializers.SlugRelatedField):
    """An institution named by its slug in API input and output."""

    def __init__(self, **kwargs):
        super().__init__(slug_field="slug", queryset=Institution.objects.all(), **kwargs)
