"""BibTeX import and export for papers.

Import turns each entry of a .bib file into a PaperDraft, or into an EntryError naming the entry,
so one broken entry never holds back the others. Export writes drafts as entries that import reads
back unchanged. Neither touches the database: the caller decides what to save and what to report.
"""

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import bibtexparser
from bibtexparser.exceptions import BlockAbortedException
from bibtexparser.library import Library
from bibtexparser.middlewares import NormalizeFieldKeys, SeparateCoAuthors, SplitNameParts
from bibtexparser.middlewares.names import InvalidNameError, NameParts, parse_single_name_into_parts
from bibtexparser.model import (
    DuplicateBlockKeyBlock,
    DuplicateFieldKeyBlock,
    Entry,
    Field,
    MiddlewareErrorBlock,
    ParsingFailedBlock,
    String,
)
from django.core.exceptions import ValidationError
from pylatexenc.latex2text import LatexNodes2Text, MacroTextSpec, get_default_latex_context_db

from apps.catalog.validators import normalize_arxiv_id, normalize_doi

UNREADABLE_KEY = "(unreadable entry)"
YEAR_RANGE = range(1000, 2101)

BLOCK_START = re.compile(r"@\s*([A-Za-z]+)\s*[{(]\s*([^\s,{}()=\"#%'\\]*)")
NON_ENTRY_BLOCKS = frozenset({"string", "preamble", "comment"})
UNESCAPED_PERCENT = re.compile(r"(?<!\\)%")
ESCAPED_IDENTIFIER_CHARACTER = re.compile(r"\\([_%&#$])")
PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
FOUR_DIGITS = re.compile(r"[0-9]{4}")
LEADING_YEAR = re.compile(r"^([0-9]{4})")
STANDALONE_AND = re.compile(r"(?<!\S)and(?!\S)", re.IGNORECASE)
MEETING_VENUE = re.compile(r"\b(proceedings|conference|workshop|symposium)\b", re.IGNORECASE)
# Character pairs that TeX turns into one glyph (-- into an en dash, `` into a quote).
LIGATURE_PAIR = re.compile(r"(?<=-)(?=-)|(?<=`)(?=`)|(?<=')(?=')|(?<=[?!])(?=`)")
VALID_KEY = re.compile(r"^[^\s,{}()\"#%=\\~]+$")

# Braces cannot be escaped with a backslash: BibTeX still counts them, so they get text macros.
BIBTEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "{": r"\textbraceleft{}",
    "}": r"\textbraceright{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
# Letters that Unicode decomposition does not reduce to ASCII, for generated keys.
ASCII_FALLBACKS = str.maketrans(
    {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th"}
)
KEY_TITLE_STOPWORDS = frozenset({"a", "an", "the", "on", "of", "in", "for", "to", "and"})


@dataclass(frozen=True)
class AuthorDraft:
    name: str
    orcid: str = ""


@dataclass(frozen=True)
class PaperDraft:
    key: str
    title: str
    abstract: str
    authors: tuple[AuthorDraft, ...]
    venue: str
    year: int | None
    doi: str
    arxiv_id: str


@dataclass(frozen=True)
class EntryError:
    key: str
    line: int | None
    message: str


def parse_bibtex(text: str) -> tuple[list[PaperDraft], list[EntryError]]:
    """Reads every entry of a .bib text; the drafts and the errors are each in file order.

    Text without any entry (empty, or comments only) gives ([], []).
    """
    library = bibtexparser.parse_string(
        text, append_middleware=[NormalizeFieldKeys(), SeparateCoAuthors(), SplitNameParts()]
    )
    drafts: list[PaperDraft] = []
    errors: list[EntryError] = []
    for block in library.blocks:
        if isinstance(block, Entry):
            result = _entry_to_draft(block)
            if isinstance(result, PaperDraft):
                drafts.append(result)
            else:
                errors.append(result)
        elif isinstance(block, ParsingFailedBlock):
            errors.append(_failed_block_error(block))
    return drafts, errors


def papers_to_bibtex(papers: Iterable[PaperDraft]) -> str:
    """Writes one entry per paper, in order; every entry gets a distinct citation key."""
    papers = list(papers)
    library = Library()
    for paper, key in zip(papers, _citation_keys(papers), strict=True):
        library.add(_paper_entry(paper, key))
    bibtex_format = bibtexparser.BibtexFormat()
    bibtex_format.indent = "  "
    bibtex_format.block_separator = "\n"
    return bibtexparser.write_string(library, bibtex_format=bibtex_format)


def _line(start_line: int | None) -> int | None:
    # bibtexparser counts lines from 0; people count from 1.
    return None if start_line is None else start_line + 1


def _failed_block_error(block: ParsingFailedBlock) -> EntryError:
    line = _line(block.start_line)
    if isinstance(block, DuplicateBlockKeyBlock):
        if isinstance(block.previous_block, String):
            return EntryError(
                f"@string {block.key}",
                line,
                "duplicate @string name: the earlier definition is the one used",
            )
        earlier = _line(block.previous_block.start_line)
        return EntryError(
            block.key, line, f"duplicate key: the entry on line {earlier} already uses it"
        )
    if isinstance(block, DuplicateFieldKeyBlock):
        fields = ", ".join(sorted(block.duplicate_keys))
        return EntryError(_failed_block_key(block), line, f"duplicate field: {fields}")
    if isinstance(block, MiddlewareErrorBlock) and isinstance(block.error, InvalidNameError):
        error = block.error
        message = f"author: cannot read the name '{error.name}': {error.reason.lower()}"
        return EntryError(_failed_block_key(block), line, message)
    if isinstance(block.error, BlockAbortedException):
        message = f"syntax error: {block.error.abort_reason.strip()}"
    else:
        message = f"could not be read: {block.error}"
    return EntryError(_failed_block_key(block), line, message)


def _failed_block_key(block: ParsingFailedBlock) -> str:
    if isinstance(block.ignore_error_block, Entry) and block.ignore_error_block.key:
        return block.ignore_error_block.key
    match = BLOCK_START.match((block.raw or "").lstrip())
    if match is None:
        return UNREADABLE_KEY
    block_type, key = match[1].lower(), match[2]
    if block_type in NON_ENTRY_BLOCKS:
        return f"@{block_type}"
    return key or UNREADABLE_KEY


def _entry_to_draft(entry: Entry) -> PaperDraft | EntryError:
    fields = {field.key: field.value for field in entry.fields}
    problems: list[str] = []
    if not entry.key.strip():
        problems.append("the entry has no citation key")
    elif any(character.isspace() for character in entry.key):
        problems.append(f"key: '{entry.key}' contains spaces, which BibTeX does not allow")

    title = _collapse_whitespace(_decode_latex(_text(fields, "title")))
    if not title:
        problems.append("title: missing")

    doi = _identifier(fields, "doi")
    if doi:
        try:
            doi = normalize_doi(doi)
        except ValidationError as error:
            problems.append(f"doi: {_reason(error)}")

    arxiv_field, arxiv_id = _arxiv_field(fields)
    if arxiv_id:
        try:
            arxiv_id = normalize_arxiv_id(arxiv_id)
        except ValidationError as error:
            problems.append(f"{arxiv_field}: {_reason(error)}")

    year_text = _year_text(fields)
    year = int(year_text) if FOUR_DIGITS.fullmatch(year_text) else None
    if year_text and (year is None or year not in YEAR_RANGE):
        problems.append(
            f"year: '{year_text}' is not a year: expected four digits between 1000 and 2100"
        )

    if problems:
        return EntryError(entry.key, _line(entry.start_line), "; ".join(problems))
    return PaperDraft(
        key=entry.key,
        title=title,
        abstract=_paragraphs(_decode_latex(_text(fields, "abstract"))),
        authors=_authors(fields.get("author")),
        venue=_collapse_whitespace(_decode_latex(_venue_text(fields))),
        year=year,
        doi=doi,
        arxiv_id=arxiv_id,
    )


def _reason(error: ValidationError) -> str:
    return " ".join(error.messages).rstrip(".")


def _text(fields: dict[str, object], key: str) -> str:
    value = fields.get(key)
    return "" if value is None else str(value)


def _identifier(fields: dict[str, object], key: str) -> str:
    """An identifier field as written, without the braces and escapes LaTeX needs around it."""
    value = _text(fields, key).replace("{", "").replace("}", "")
    return ESCAPED_IDENTIFIER_CHARACTER.sub(r"\1", value).strip()


def _arxiv_field(fields: dict[str, object]) -> tuple[str, str]:
    """The field naming the arXiv id, and its value: biblatex `eprint`, or an `arxiv` field."""
    eprint_type = _identifier(fields, "archiveprefix") or _identifier(fields, "eprinttype")
    if eprint_type.lower() == "arxiv" and _identifier(fields, "eprint"):
        return "eprint", _identifier(fields, "eprint")
    return "arxiv", _identifier(fields, "arxiv")


def _year_text(fields: dict[str, object]) -> str:
    if "year" in fields:
        return _identifier(fields, "year")
    # biblatex files often give only `date = {2017-06-12}`.
    match = LEADING_YEAR.match(_identifier(fields, "date"))
    return match[1] if match else ""


def _venue_text(fields: dict[str, object]) -> str:
    for key in ("journal", "journaltitle", "booktitle"):
        if _text(fields, key).strip():
            return _text(fields, key)
    return ""


def _authors(value: object) -> tuple[AuthorDraft, ...]:
    if not isinstance(value, list):
        return ()
    names = (_collapse_whitespace(_decode_latex(_first_name_first(parts))) for parts in value)
    # "and others" is BibTeX for "et al.", not a person.
    return tuple(AuthorDraft(name=name) for name in names if name and name != "others")


def _first_name_first(parts: object) -> str:
    return parts.merge_first_name_first if isinstance(parts, NameParts) else str(parts)


@functools.cache
def _latex_decoder() -> LatexNodes2Text:
    context = get_default_latex_context_db()
    context.add_context_category(
        "catalog-bibtex",
        prepend=True,
        macros=[
            MacroTextSpec("url", simplify_repl="%s"),
            MacroTextSpec("textbraceleft", simplify_repl="{"),
            MacroTextSpec("textbraceright", simplify_repl="}"),
            MacroTextSpec("textasciicircum", simplify_repl="^"),
        ],
    )
    return LatexNodes2Text(latex_context=context, math_mode="verbatim", keep_braced_groups=False)


def _decode_latex(value: str) -> str:
    """Accents and escapes to Unicode (`M{\\"u}ller` -> `Müller`), protective braces removed."""
    if not value:
        return ""
    # A bare % in a pasted abstract means "percent", not "ignore the rest of the line".
    return str(_latex_decoder().latex_to_text(UNESCAPED_PERCENT.sub(r"\\%", value)))


def _collapse_whitespace(value: str) -> str:
    return " ".join(value.split())


def _paragraphs(value: str) -> str:
    paragraphs = (_collapse_whitespace(part) for part in PARAGRAPH_BREAK.split(value))
    return "\n\n".join(part for part in paragraphs if part)


def _escape(text: str) -> str:
    escaped = "".join(BIBTEX_ESCAPES.get(character, character) for character in text)
    return LIGATURE_PAIR.sub("{}", escaped)


def _bibtex_name(name: str) -> str:
    """`Ludwig van Beethoven` -> `van Beethoven, Ludwig`, the form BibTeX splits reliably."""
    # A bare "and" inside one name would otherwise split it into two authors.
    escaped = STANDALONE_AND.sub(lambda match: f"{{{match[0]}}}", _escape(name))
    return parse_single_name_into_parts(escaped, strict=False).merge_last_name_first


def _paper_entry(paper: PaperDraft, key: str) -> Entry:
    # @inproceedings when the venue names a meeting, @article for any other venue, @misc without.
    if not paper.venue:
        entry_type, venue_field = "misc", ""
    elif MEETING_VENUE.search(paper.venue):
        entry_type, venue_field = "inproceedings", "booktitle"
    else:
        entry_type, venue_field = "article", "journal"

    # The inner braces keep the title's capitalisation: BibTeX styles would lower-case it.
    fields = [Field("title", f"{{{_escape(paper.title)}}}")]
    authors = [_bibtex_name(author.name) for author in paper.authors if author.name.strip()]
    if authors:
        fields.append(Field("author", " and ".join(authors)))
    if venue_field:
        fields.append(Field(venue_field, _escape(paper.venue)))
    if paper.year is not None:
        fields.append(Field("year", str(paper.year)))
    # Identifiers are written verbatim: biblatex reads doi and eprint without LaTeX escapes.
    if paper.doi:
        fields.append(Field("doi", paper.doi))
    if paper.arxiv_id:
        fields.append(Field("eprint", paper.arxiv_id))
        fields.append(Field("archiveprefix", "arXiv"))
    if paper.abstract:
        fields.append(Field("abstract", _escape(paper.abstract)))
    return Entry(entry_type, key, fields)


def _citation_keys(papers: list[PaperDraft]) -> list[str]:
    """The draft's own key where it has a usable one, else a generated key; all distinct."""
    own_keys = [paper.key if VALID_KEY.match(paper.key) else "" for paper in papers]
    reserved = {key for key in own_keys if key}
    used: set[str] = set()
    keys: list[str] = []
    for paper, own_key in zip(papers, own_keys, strict=True):
        base = own_key or _generated_key(paper)
        key, suffix = base, 1
        # A draft's own key stays as it is unless an earlier draft already took it.
        while key in used or (key != own_key and key in reserved):
            suffix += 1
            key = f"{base}-{suffix}"
        used.add(key)
        keys.append(key)
    return keys


def _generated_key(paper: PaperDraft) -> str:
    """`vaswani2017attention`: first author's last name, year, first significant title word."""
    surname = ""
    if paper.authors:
        name_parts = parse_single_name_into_parts(paper.authors[0].name, strict=False)
        surname = _ascii_word(" ".join(name_parts.last))
    year = "" if paper.year is None else str(paper.year)
    title_words = (_ascii_word(word) for word in paper.title.split())
    title_word = next(
        (word for word in title_words if word and word not in KEY_TITLE_STOPWORDS), ""
    )
    return f"{surname}{year}{title_word}" or "paper"


def _ascii_word(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.lower().translate(ASCII_FALLBACKS))
    return re.sub(r"[^a-z0-9]", "", decomposed.encode("ascii", "ignore").decode("ascii"))
