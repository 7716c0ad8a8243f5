"""Persistent identifiers for people (ORCID iD) and organisations (ROR id).

Both accept the bare identifier or its resolver URL and are stored in their bare, canonical form.
Both carry a checksum, so a mistyped identifier is caught here rather than at the resolver.
"""

import re

from django.core.exceptions import ValidationError

ORCID_PATTERN = re.compile(r"^(\d{4})-?(\d{4})-?(\d{4})-?(\d{3}[\dX])$")
ORCID_URL_PREFIXES = ("https://orcid.org/", "http://orcid.org/", "orcid.org/")

ROR_PATTERN = re.compile(r"^0[0-9a-hjkmnp-tv-z]{6}\d{2}$")
ROR_URL_PREFIXES = ("https://ror.org/", "http://ror.org/", "ror.org/")
CROCKFORD_BASE32 = "0123456789abcdefghjkmnpqrstvwxyz"

# What input fields accept (before normalizing), for serializers and so the API schema; any
# case goes. The check digits are verified by normalize_orcid / normalize_ror.
ORCID_INPUT = re.compile(r"^(?:(?:https?://)?orcid\.org/)?\d{4}-?\d{4}-?\d{4}-?\d{3}[\dX]$", re.I)
ROR_INPUT = re.compile(r"^(?:(?:https?://)?ror\.org/)?0[0-9a-hjkmnp-tv-z]{6}\d{2}$", re.I)


def _strip_prefix(value: str, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        if value.lower().startswith(prefix):
            return value[len(prefix) :]
    return value


def orcid_check_digit(base_digits: str) -> str:
    """ISO 7064 MOD 11-2 over the first 15 digits of an ORCID iD."""
    total = 0
    for digit in base_digits:
        total = (total + int(digit)) * 2
    result = (12 - total % 11) % 11
    return "X" if result == 10 else str(result)


def normalize_orcid(value: str) -> str:
    """Returns the canonical `0000-0002-1825-0097` form, or raises ValidationError."""
    candidate = _strip_prefix(value.strip(), ORCID_URL_PREFIXES).upper()
    match = ORCID_PATTERN.match(candidate)
    if not match:
        raise ValidationError(
            f"'{value}' is not an ORCID iD: expected 16 digits like 0000-0002-1825-0097.",
            code="invalid_orcid",
        )
    digits = "".join(match.groups())
    if orcid_check_digit(digits[:15]) != digits[15]:
        raise ValidationError(
            f"'{value}' is not a valid ORCID iD: its check digit does not match.",
            code="invalid_orcid_checksum",
        )
    return "-".join(match.groups())


def validate_orcid(value: str) -> None:
    if normalize_orcid(value) != value:
        raise ValidationError(
            f"'{value}' is not in canonical form (0000-0002-1825-0097).", code="invalid_orcid"
        )


def ror_checksum(prefix: str) -> str:
    """ISO 7064 MOD 97-10 over the Crockford base32 value of the first 7 characters."""
    number = 0
    for char in prefix:
        number = number * 32 + CROCKFORD_BASE32.index(char)
    return f"{98 - (number * 100) % 97:02d}"


def normalize_ror(value: str) -> str:
    """Returns the bare lower-case ROR id (`05dxps055`), or raises ValidationError."""
    candidate = _strip_prefix(value.strip(), ROR_URL_PREFIXES).lower()
    if not ROR_PATTERN.match(candidate):
        raise ValidationError(
            f"'{value}' is not a ROR id: expected 9 characters like 05dxps055 "
            "(a 0, six Crockford base32 characters, two check digits).",
            code="invalid_ror",
        )
    if ror_checksum(candidate[:7]) != candidate[7:]:
        raise ValidationError(
            f"'{value}' is not a valid ROR id: its check digits do not match.",
            code="invalid_ror_checksum",
        )
    return candidate


def validate_ror(value: str) -> None:
    if normalize_ror(value) != value:
        raise ValidationError(
            f"'{value}' is not in canonical form (05dxps055).", code="invalid_ror"
        )
