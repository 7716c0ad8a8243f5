from rest_framework import serializers

from apps.accounts.models import Institution
from apps.accounts.validators import ORCID_INPUT, ROR_INPUT


class InstitutionSlugField(serializers.SlugRelatedField):
    """An institution named by its slug in API input and output."""

    def __init__(self, **kwargs):
        super().__init__(slug_field="slug", queryset=Institution.objects.all(), **kwargs)


class OrcidField(serializers.RegexField):
    """An ORCID iD or its URL, in any case; services normalize it and verify its check digit."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", "ORCID iD or its URL (its check digit is verified).")
        super().__init__(
            ORCID_INPUT,
            max_length=64,
            error_messages={
                "invalid": "This is not an ORCID iD: expected 16 digits like "
                "0000-0002-1825-0097, or its orcid.org URL."
            },
            **kwargs,
        )


class RorIdField(serializers.RegexField):
    """A ROR id or its URL, in any case; services normalize it and verify its check digits."""

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", "ROR id or its URL (its check digits are verified).")
        super().__init__(
            ROR_INPUT,
            max_length=64,
            error_messages={
                "invalid": "This is not a ROR id: expected 9 characters like 05dxps055 (a 0, "
                "six Crockford base32 characters, two check digits), or its ror.org URL."
            },
            **kwargs,
        )
