import pytest
from django.core.exceptions import ValidationError

from apps.accounts.validators import normalize_orcid, normalize_ror


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("0000-0002-1825-0097", "0000-0002-1825-0097"),
        ("0000000218250097", "0000-0002-1825-0097"),
        ("https://orcid.org/0000-0001-5109-3700", "0000-0001-5109-3700"),
        ("0000-0002-1694-233x", "0000-0002-1694-233X"),
        ("  orcid.org/0000-0002-1694-233X ", "0000-0002-1694-233X"),
    ],
)
def test_valid_orcids_are_normalised(value, canonical):
    assert normalize_orcid(value) == canonical


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("0000-0002-1825-0098", "invalid_orcid_checksum"),
        ("0000-0002-1694-2330", "invalid_orcid_checksum"),
        ("0000-0002-1825", "invalid_orcid"),
        ("0000-0002-1825-009X1", "invalid_orcid"),
        ("https://example.org/0000-0002-1825-0097", "invalid_orcid"),
        ("abcd-efgh-ijkl-mnop", "invalid_orcid"),
    ],
)
def test_invalid_orcids_are_refused_with_the_reason(value, code):
    with pytest.raises(ValidationError) as caught:
        normalize_orcid(value)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("05dxps055", "05dxps055"),
        ("https://ror.org/03vek6s52", "03vek6s52"),
        ("042NB2S44", "042nb2s44"),
    ],
)
def test_valid_ror_ids_are_normalised(value, canonical):
    assert normalize_ror(value) == canonical


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("05dxps056", "invalid_ror_checksum"),
        ("15dxps055", "invalid_ror"),  # must start with 0
        ("05dxpu055", "invalid_ror"),  # u is not Crockford base32
        ("05dxps05", "invalid_ror"),
        ("https://ror.org/", "invalid_ror"),
    ],
)
def test_invalid_ror_ids_are_refused_with_the_reason(value, code):
    with pytest.raises(ValidationError) as caught:
        normalize_ror(value)
    assert caught.value.code == code
