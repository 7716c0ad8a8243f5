"""Identifiers for catalogue records: DOIs, arXiv ids and SPDX license expressions.

Each accepts the forms people paste (resolver URLs, `doi:` / `arXiv:` prefixes, any casing) and is
stored in one canonical form, so the same paper or license is always spelled the same way.
"""

import functools
import re
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ValidationError
from license_expression import ExpressionError, Licensing, get_spdx_licensing

DOI_MAX_LENGTH = 255
DOI_PATTERN = re.compile(r"^10\.\d+(?:\.\d+)*/\S+$")
DOI_URL_PREFIXES = (
    "https://doi.org/",
    "http://doi.org/",
    "https://dx.doi.org/",
    "http://dx.doi.org/",
    "doi.org/",
    "dx.doi.org/",
)
DOI_PREFIX = "doi:"

ARXIV_NEW_PATTERN = re.compile(r"^(\d{2})(\d{2})\.(\d{4,5})(v[1-9]\d*)?$")
ARXIV_OLD_PATTERN = re.compile(
    r"^([a-z]+(?:-[a-z]+)?)(\.[a-z]{2})?/(\d{2})(\d{2})(\d{3})(v[1-9]\d*)?$"
)
# The archives that existed before April 2007, when arXiv switched to YYMM.NNNN ids.
ARXIV_OLD_ARCHIVES = frozenset(
    {
        "acc-phys",
        "adap-org",
        "alg-geom",
        "ao-sci",
        "astro-ph",
        "atom-ph",
        "bayes-an",
        "chao-dyn",
        "chem-ph",
        "cmp-lg",
        "comp-gas",
        "cond-mat",
        "cs",
        "dg-ga",
        "funct-an",
        "gr-qc",
        "hep-ex",
        "hep-lat",
        "hep-ph",
        "hep-th",
        "math",
        "math-ph",
        "mtrl-th",
        "nlin",
        "nucl-ex",
        "nucl-th",
        "patt-sol",
        "physics",
        "plasm-ph",
        "q-alg",
        "q-bio",
        "quant-ph",
        "solv-int",
        "supr-con",
    }
)
ARXIV_HOSTS = frozenset({"arxiv.org", "www.arxiv.org", "export.arxiv.org"})
ARXIV_PATH_PREFIXES = ("/abs/", "/pdf/")
ARXIV_PREFIX = "arxiv:"
ARXIV_EXPECTED = (
    "expected a new-style id like 2301.01234 or 2301.01234v2 (YYMM.NNNNN) "
    "or an old-style id like hep-th/9901001 (archive/YYMMNNN)"
)

LICENSE_REF_PATTERN = re.compile(
    r"^(?:DocumentRef-[A-Za-z0-9.-]+:)?LicenseRef-[A-Za-z0-9.-]+$", re.IGNORECASE
)


def _strip_prefix(value: str, prefixes: tuple[str, ...]) -> tuple[str, bool]:
    """Returns the value without the first matching prefix, and whether one was removed."""
    for prefix in prefixes:
        if value.lower().startswith(prefix):
            return value[len(prefix) :], True
    return value, False


def normalize_doi(value: str) -> str:
    """Returns the bare lower-case DOI (`10.1038/nature14539`), or raises ValidationError.

    DOIs are case-insensitive, so the lower-case form is the one stored and compared.
    """
    candidate = value.strip()
    candidate, from_url = _strip_prefix(candidate, DOI_URL_PREFIXES)
    if from_url:
        # Resolver URLs percent-encode characters such as < > # that DOI suffixes may contain.
        candidate = unquote(candidate)
    else:
        candidate, _ = _strip_prefix(candidate, (DOI_PREFIX,))
        candidate = candidate.lstrip()
    candidate = candidate.lower()
    if not DOI_PATTERN.match(candidate) or not candidate.isprintable():
        raise ValidationError(
            f"'{value}' is not a DOI: expected 10.<registrant>/<suffix>, like 10.1038/nature14539.",
            code="invalid_doi",
        )
    if len(candidate) > DOI_MAX_LENGTH:
        raise ValidationError(
            f"'{value}' is not a DOI: it is longer than {DOI_MAX_LENGTH} characters.",
            code="invalid_doi",
        )
    return candidate


def validate_doi(value: str) -> None:
    if normalize_doi(value) != value:
        raise ValidationError(
            f"'{value}' is not in canonical form (10.1038/nature14539).", code="invalid_doi"
        )


def _arxiv_candidate(value: str) -> str:
    """The id part of an `arXiv:` prefix or an arxiv.org abstract or PDF link."""
    candidate = value.strip()
    parts = urlsplit(candidate)
    if parts.scheme in ("http", "https") or candidate.lower().startswith("arxiv.org/"):
        if not parts.scheme:
            parts = urlsplit(f"https://{candidate}")
        path, from_path = _strip_prefix(parts.path, ARXIV_PATH_PREFIXES)
        if (parts.hostname or "") not in ARXIV_HOSTS or not from_path:
            return ""
        return path.removesuffix(".pdf").rstrip("/")
    candidate, _ = _strip_prefix(candidate, (ARXIV_PREFIX,))
    return candidate.strip()


def _valid_new_arxiv_id(match: re.Match[str]) -> bool:
    year, month, number = int(match[1]), int(match[2]), match[3]
    if not 1 <= month <= 12 or (year, month) < (7, 4):
        return False
    # Four-digit sequence numbers until December 2014, five from January 2015.
    return len(number) == (4 if year < 15 else 5)


def _valid_old_arxiv_id(match: re.Match[str]) -> bool:
    year, month = int(match[3]), int(match[4])
    full_year = 1900 + year if year >= 91 else 2000 + year
    in_use = (1991, 7) <= (full_year, month) <= (2007, 3)
    return match[1] in ARXIV_OLD_ARCHIVES and 1 <= month <= 12 and in_use


def normalize_arxiv_id(value: str) -> str:
    """Returns the bare arXiv id (`1706.03762`, `hep-th/9901001v2`), or raises ValidationError.

    A version suffix is kept when given: it names one specific revision of the paper.
    """
    candidate = _arxiv_candidate(value)
    new_style = ARXIV_NEW_PATTERN.match(candidate.lower())
    if new_style and _valid_new_arxiv_id(new_style):
        return candidate.lower()
    old_style = ARXIV_OLD_PATTERN.match(candidate.lower())
    if old_style and _valid_old_arxiv_id(old_style):
        archive, subject_class, year, month, number, version = old_style.groups(default="")
        return f"{archive}{subject_class.upper()}/{year}{month}{number}{version}"
    raise ValidationError(
        f"'{value}' is not an arXiv id: {ARXIV_EXPECTED}.", code="invalid_arxiv_id"
    )


def validate_arxiv_id(value: str) -> None:
    if normalize_arxiv_id(value) != value:
        raise ValidationError(
            f"'{value}' is not in canonical form (1706.03762 or hep-th/9901001).",
            code="invalid_arxiv_id",
        )


@functools.cache
def _spdx_licensing() -> Licensing:
    # Loading the license index takes a noticeable moment: do it once per process.
    return get_spdx_licensing()


def normalize_spdx_license(value: str) -> str:
    """Returns the SPDX expression with canonical id casing (`MIT OR Apache-2.0`).

    Deprecated ids become their current spelling (`GPL-3.0` -> `GPL-3.0-only`); custom
    `LicenseRef-...` ids are accepted as written.
    """
    licensing = _spdx_licensing()
    if not value.strip():
        raise ValidationError(
            "A license is required: give an SPDX id or expression such as MIT or Apache-2.0.",
            code="invalid_license",
        )
    try:
        parsed = licensing.parse(value, strict=True)
    except ExpressionError as error:
        raise ValidationError(
            f"'{value}' is not an SPDX license expression: {error}.", code="invalid_license"
        ) from error
    unknown = [
        key for key in licensing.unknown_license_keys(parsed) if not LICENSE_REF_PATTERN.match(key)
    ]
    if unknown:
        raise ValidationError(
            f"'{value}' uses unknown SPDX license id(s): {', '.join(unknown)}. "
            "See https://spdx.org/licenses/ or use LicenseRef-<name> for a custom license.",
            code="unknown_license",
        )
    return str(parsed)


def validate_spdx_license(value: str) -> None:
    if normalize_spdx_license(value) != value:
        raise ValidationError(
            f"'{value}' is not in canonical form (e.g. MIT OR Apache-2.0).",
            code="invalid_license",
        )
