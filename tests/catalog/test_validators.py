import pytest
from django.core.exceptions import ValidationError

from apps.catalog.validators import (
    normalize_arxiv_id,
    normalize_doi,
    normalize_spdx_license,
    validate_arxiv_id,
    validate_doi,
    validate_spdx_license,
)


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("10.1038/nature14539", "10.1038/nature14539"),
        ("10.1038/NATURE14539", "10.1038/nature14539"),
        ("doi:10.1145/3065386", "10.1145/3065386"),
        ("DOI: 10.1145/3065386", "10.1145/3065386"),
        ("https://doi.org/10.1038/nature14539", "10.1038/nature14539"),
        ("http://dx.doi.org/10.1109/CVPR.2016.90", "10.1109/cvpr.2016.90"),
        ("  https://doi.org/10.1000.10/ABC-123 ", "10.1000.10/abc-123"),
        # Resolver URLs percent-encode the brackets of SICI-style suffixes.
        (
            "https://doi.org/10.1002/%28SICI%291097-4636%28199812%2943:4%3C385::AID-JBM6%3E3.0.CO;2-Q",
            "10.1002/(sici)1097-4636(199812)43:4<385::aid-jbm6>3.0.co;2-q",
        ),
    ],
)
def test_dois_are_normalised_to_the_bare_lower_case_form(value, canonical):
    assert normalize_doi(value) == canonical


@pytest.mark.parametrize(
    "value",
    [
        "nature14539",
        "10.1038",
        "10.1038/",
        "10./nature14539",
        "10.abc/nature14539",
        "11.1038/nature14539",
        "10.1038/nature 14539",
        "https://example.org/10.1038/nature14539",
        "10.1038/" + "x" * 250,
    ],
)
def test_strings_that_are_not_dois_are_refused(value):
    with pytest.raises(ValidationError) as caught:
        normalize_doi(value)
    assert caught.value.code == "invalid_doi"
    assert "is not a DOI" in caught.value.messages[0]


def test_the_doi_field_validator_accepts_only_the_canonical_form():
    validate_doi("10.1038/nature14539")
    with pytest.raises(ValidationError):
        validate_doi("https://doi.org/10.1038/nature14539")


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("1706.03762", "1706.03762"),
        ("1706.03762v7", "1706.03762v7"),
        ("arXiv:1706.03762", "1706.03762"),
        ("https://arxiv.org/abs/2301.01234v3", "2301.01234v3"),
        ("https://arxiv.org/pdf/2301.01234", "2301.01234"),
        ("http://arxiv.org/pdf/2301.01234v2.pdf", "2301.01234v2"),
        ("arxiv.org/abs/1706.03762", "1706.03762"),
        ("0704.0001", "0704.0001"),
        ("1412.6980", "1412.6980"),
        ("1501.00001", "1501.00001"),
        ("hep-th/9901001", "hep-th/9901001"),
        ("arXiv:hep-th/9711200v3", "hep-th/9711200v3"),
        ("math.AG/0309136", "math.AG/0309136"),
        ("https://arxiv.org/abs/math.ag/0309136", "math.AG/0309136"),
    ],
)
def test_arxiv_ids_are_normalised_to_the_bare_id_keeping_the_version(value, canonical):
    assert normalize_arxiv_id(value) == canonical


@pytest.mark.parametrize(
    "value",
    [
        "1706.3762",  # four digits were used only until 1412
        "1501.0001",
        "1412.12345",  # five digits only from 1501 on
        "1713.03762",  # month 13
        "0703.0001",  # new-style ids start in April 2007
        "1706.03762v0",
        "hep-th/0801001",  # old-style ids end in March 2007
        "hep-th/99010",
        "nonsense/9901001",
        "https://example.org/abs/1706.03762",
        "10.1038/nature14539",
    ],
)
def test_strings_that_are_not_arxiv_ids_are_refused_naming_the_expected_shape(value):
    with pytest.raises(ValidationError) as caught:
        normalize_arxiv_id(value)
    assert caught.value.code == "invalid_arxiv_id"
    assert "2301.01234" in caught.value.messages[0]
    assert "hep-th/9901001" in caught.value.messages[0]


def test_the_arxiv_field_validator_accepts_only_the_canonical_form():
    validate_arxiv_id("1706.03762")
    with pytest.raises(ValidationError):
        validate_arxiv_id("arXiv:1706.03762")


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("MIT", "MIT"),
        ("apache-2.0", "Apache-2.0"),
        ("cc-by-4.0", "CC-BY-4.0"),
        ("GPL-3.0-only OR MIT", "GPL-3.0-only OR MIT"),
        ("mit and (apache-2.0 or bsd-3-clause)", "MIT AND (Apache-2.0 OR BSD-3-Clause)"),
        (
            "GPL-2.0-or-later WITH Classpath-exception-2.0",
            "GPL-2.0-or-later WITH Classpath-exception-2.0",
        ),
        ("LicenseRef-Acme-Research-1.0", "LicenseRef-Acme-Research-1.0"),
    ],
)
def test_spdx_expressions_are_normalised_to_canonical_id_casing(value, canonical):
    assert normalize_spdx_license(value) == canonical


def test_an_unknown_license_id_is_refused_naming_it():
    with pytest.raises(ValidationError) as caught:
        normalize_spdx_license("MIT OR Cool-License-2.0")
    assert caught.value.code == "unknown_license"
    assert "unknown SPDX license id(s): Cool-License-2.0." in caught.value.messages[0]


@pytest.mark.parametrize(
    "value", ["", "   ", "MIT OR", "(MIT", "MIT Apache-2.0", "MIT WITH Apache-2.0"]
)
def test_malformed_license_expressions_are_refused(value):
    with pytest.raises(ValidationError) as caught:
        normalize_spdx_license(value)
    assert caught.value.code == "invalid_license"


def test_the_license_field_validator_accepts_only_the_canonical_form():
    validate_spdx_license("Apache-2.0 OR MIT")
    with pytest.raises(ValidationError):
        validate_spdx_license("apache-2.0 or mit")
