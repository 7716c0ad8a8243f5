"""OAI-PMH 2.0: the protocol half. A request's arguments in, the response document out.

Errors are documents too (HTTP 200 with `<error code=…>`). Resumption tokens are stateless:
the request and the last position handed out, signed with the SECRET_KEY (django.core.signing),
so a token survives a restart, cannot be forged, and expires after TOKEN_MAX_AGE. Records come
from oai_records.py, their metadata from oai_metadata.py.
"""

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.utils import timezone
from lxml import etree

from apps.federation import oai_metadata, oai_records
from apps.federation.oai_records import Header, Position, Selection

OAI_NS = "http://www.openarchives.org/OAI/2.0/"
OAI_SCHEMA = "http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd"
XSI = oai_metadata.XSI
GRANULARITY = "YYYY-MM-DDThh:mm:ssZ"
TOKEN_SALT = "apps.federation.oai.resumption-token"  # noqa: S105 (a namespace, not a secret)
TOKEN_MAX_AGE = timedelta(days=7)

_LIST_ARGUMENTS = frozenset({"metadataPrefix", "from", "until", "set"})
# Per verb: (required, optional) arguments besides `verb`; a resumption token goes alone.
VERBS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "Identify": (frozenset(), frozenset()),
    "ListMetadataFormats": (frozenset(), frozenset({"identifier"})),
    "ListSets": (frozenset(), frozenset()),
    "GetRecord": (frozenset({"identifier", "metadataPrefix"}), frozenset()),
    "ListIdentifiers": (frozenset({"metadataPrefix"}), _LIST_ARGUMENTS),
    "ListRecords": (frozenset({"metadataPrefix"}), _LIST_ARGUMENTS),
}
_RESUMABLE = frozenset({"ListSets", "ListIdentifiers", "ListRecords"})
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SECOND = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_PREFIX = re.compile(r"^[A-Za-z0-9\-_.!~*'()]+$")
_SET_SPEC = re.compile(r"^[A-Za-z0-9\-_.!~*'()]+(:[A-Za-z0-9\-_.!~*'()]+)*$")


class OaiError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def datestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sub(parent: etree._Element, name: str, text: object = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{OAI_NS}}}{name}")
    if text is not None:
        element.text = oai_metadata.clean(text)
    return element


def _single_values(arguments: Mapping[str, Sequence[str]]) -> dict[str, str]:
    if any(len(values) != 1 for values in arguments.values()):
        raise OaiError("badArgument", "An argument is repeated.")
    values = {key: values[0] for key, values in arguments.items()}
    if any(oai_metadata.clean(key) != key or oai_metadata.clean(value) != value
           for key, value in values.items()):  # fmt: skip
        raise OaiError("badArgument", "Arguments may not contain control characters.")
    return values


def _check_arguments(verb: str, arguments: dict[str, str]) -> None:
    given = set(arguments) - {"verb"}
    required, optional = VERBS[verb]
    if "resumptionToken" in given and verb in _RESUMABLE:
        if given != {"resumptionToken"}:
            raise OaiError("badArgument", "resumptionToken is an exclusive argument.")
        return
    if unknown := given - required - optional:
        raise OaiError("badArgument", f"Illegal arguments: {', '.join(sorted(unknown))}.")
    if missing := required - given:
        raise OaiError("badArgument", f"Missing arguments: {', '.join(sorted(missing))}.")


def _parse_moment(value: str, *, end: bool) -> tuple[datetime, str]:
    """A from/until value as a bound of [start, end): until covers its whole second or day."""
    try:
        if _DAY.match(value):
            moment = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
            return (moment + timedelta(days=1) if end else moment), "day"
        if _SECOND.match(value):
            moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            return (moment + timedelta(seconds=1) if end else moment), "second"
    except (ValueError, OverflowError):
        pass
    raise OaiError("badArgument", f"Not a UTC datestamp of this repository's granularity: {value}")


def _selection(arguments: dict[str, str]) -> Selection:
    start = end = None
    granularities = set()
    if "from" in arguments:
        start, granularity = _parse_moment(arguments["from"], end=False)
        granularities.add(granularity)
    if "until" in arguments:
        end, granularity = _parse_moment(arguments["until"], end=True)
        granularities.add(granularity)
    if len(granularities) > 1:
        raise OaiError("badArgument", "from and until must have the same granularity.")
    if start is not None and end is not None and start >= end:
        raise OaiError("badArgument", "from is later than until.")
    set_spec = arguments.get("set", "")
    if set_spec and not _SET_SPEC.match(set_spec):
        raise OaiError("badArgument", "Not a setSpec.")
    return Selection(start=start, end=end, set_spec=set_spec)


def _metadata_prefix(arguments: dict[str, str]) -> str:
    prefix = arguments["metadataPrefix"]
    if not _PREFIX.match(prefix):
        raise OaiError("badArgument", "Not a metadataPrefix.")
    if prefix not in oai_metadata.FORMATS:
        raise OaiError("cannotDisseminateFormat", f"No metadata format {prefix!r} here.")
    return prefix


def _moment(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _from_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def token_encode(
    *, verb: str, prefix: str, selection: Selection, after: Position, cursor: int, size: int
) -> str:
    state = {
        "v": 1,
        "verb": verb,
        "prefix": prefix,
        "start": _moment(selection.start),
        "end": _moment(selection.end),
        "set": selection.set_spec,
        "after": [after.datestamp.isoformat(), after.record_type, after.record_id],
        "cursor": cursor,
        "size": size,
    }
    return signing.dumps(state, salt=TOKEN_SALT, compress=True)


def token_decode(token: str, *, verb: str) -> tuple[str, Selection, Position, int, int]:
    """(prefix, selection, after, cursor, complete size) of a token this node issued."""
    try:
        state = signing.loads(token, salt=TOKEN_SALT, max_age=TOKEN_MAX_AGE)
        if state["v"] != 1 or state["verb"] != verb:
            raise ValueError(state["verb"])
        stamp, record_type, record_id = state["after"]
        after = Position(datetime.fromisoformat(stamp), str(record_type), int(record_id))
        selection = Selection(_from_iso(state["start"]), _from_iso(state["end"]), state["set"])
        return str(state["prefix"]), selection, after, int(state["cursor"]), int(state["size"])
    except (signing.BadSignature, KeyError, TypeError, ValueError) as error:
        raise OaiError("badResumptionToken", "Invalid or expired resumption token.") from error


def _header(parent: etree._Element, header: Header) -> None:
    element = _sub(parent, "header")
    if header.deleted:
        element.set("status", "deleted")
    _sub(element, "identifier", oai_records.oai_identifier(header.record_type, header.record_id))
    _sub(element, "datestamp", datestamp(header.datestamp))
    for spec in header.set_specs:
        _sub(element, "setSpec", spec)


def _record(
    parent: etree._Element, header: Header, row: oai_records.CatalogRow | None, prefix: str
) -> None:
    record = _sub(parent, "record")
    _header(record, header)
    if row is not None:
        _sub(record, "metadata").append(oai_metadata.metadata(prefix, header.record_type, row))


def _identify(body: etree._Element, base_url: str) -> None:
    identify = _sub(body, "Identify")
    _sub(identify, "repositoryName", settings.NODE_NAME)
    _sub(identify, "baseURL", base_url)
    _sub(identify, "protocolVersion", "2.0")
    _sub(identify, "adminEmail", settings.OAI_ADMIN_EMAIL)
    _sub(identify, "earliestDatestamp", datestamp(oai_records.earliest_datestamp()))
    _sub(identify, "deletedRecord", "persistent")
    _sub(identify, "granularity", GRANULARITY)


def _list_metadata_formats(body: etree._Element, arguments: dict[str, str]) -> None:
    if "identifier" in arguments:
        _header_of(arguments["identifier"])
    formats = _sub(body, "ListMetadataFormats")
    for fmt in oai_metadata.FORMATS.values():
        element = _sub(formats, "metadataFormat")
        _sub(element, "metadataPrefix", fmt.prefix)
        _sub(element, "schema", fmt.schema)
        _sub(element, "metadataNamespace", fmt.namespace)


def _list_sets(body: etree._Element, arguments: dict[str, str]) -> None:
    if "resumptionToken" in arguments:
        raise OaiError("badResumptionToken", "The list of sets is never split.")
    sets = _sub(body, "ListSets")
    entries = [(oai_records.TYPE_SET, "Records by type")]
    entries += [
        (f"{oai_records.TYPE_SET}:{kind}", f"{kind.title()}s") for kind in oai_records.RECORD_TYPES
    ]
    entries.append((oai_records.INSTITUTION_SET, "Records by institution"))
    entries += [
        (f"{oai_records.INSTITUTION_SET}:{slug}", name)
        for slug, name in oai_records.local_institutions().values_list("slug", "name")
    ]
    for spec, name in entries:
        element = _sub(sets, "set")
        _sub(element, "setSpec", spec)
        _sub(element, "setName", name)


def _header_of(identifier: str) -> Header:
    parsed = oai_records.identifier_parse(identifier)
    header = oai_records.header_get(record_type=parsed[0], record_id=parsed[1]) if parsed else None
    if header is None:
        raise OaiError("idDoesNotExist", f"No record {identifier!r} here.")
    return header


def _get_record(body: etree._Element, arguments: dict[str, str]) -> None:
    prefix = _metadata_prefix(arguments)
    header = _header_of(arguments["identifier"])
    row = oai_records.records_for([header]).get((header.record_type, header.record_id))
    if row is None and not header.deleted:
        raise OaiError("idDoesNotExist", "The record changed while it was read.")
    _record(_sub(body, "GetRecord"), header, row, prefix)


def _list(body: etree._Element, verb: str, arguments: dict[str, str]) -> None:
    size = settings.OAI_PAGE_SIZE
    if "resumptionToken" in arguments:
        prefix, selection, after, cursor, total = token_decode(
            arguments["resumptionToken"], verb=verb
        )
        resumed = True
    else:
        prefix = _metadata_prefix(arguments)
        selection = _selection(arguments)
        after, cursor, total, resumed = None, 0, 0, False
    headers, more = oai_records.header_page(selection=selection, after=after, size=size)
    if not headers:
        raise OaiError("noRecordsMatch", "No records match the request.")
    if not resumed and more:
        total = oai_records.header_count(selection=selection)
    listing = _sub(body, verb)
    if verb == "ListIdentifiers":
        for header in headers:
            _header(listing, header)
    else:
        rows = oai_records.records_for(headers)
        for header in headers:
            row = rows.get((header.record_type, header.record_id))
            # A record withdrawn since its header was read is left to the next harvest.
            if row is not None or header.deleted:
                _record(listing, header, row, prefix)
    if not (resumed or more):
        return
    token = _sub(listing, "resumptionToken")
    token.set("completeListSize", str(max(total, cursor + len(headers))))
    token.set("cursor", str(cursor))
    if more:
        token.text = token_encode(
            verb=verb,
            prefix=prefix,
            selection=selection,
            after=headers[-1].position,
            cursor=cursor + len(headers),
            size=total,
        )
        token.set("expirationDate", datestamp(timezone.now() + TOKEN_MAX_AGE))


def _dispatch(body: etree._Element, verb: str, arguments: dict[str, str], base_url: str) -> None:
    if verb == "Identify":
        _identify(body, base_url)
    elif verb == "ListMetadataFormats":
        _list_metadata_formats(body, arguments)
    elif verb == "ListSets":
        _list_sets(body, arguments)
    elif verb == "GetRecord":
        _get_record(body, arguments)
    else:
        _list(body, verb, arguments)


def oai_response(*, arguments: Mapping[str, Sequence[str]]) -> bytes:
    """The response document to a request with these arguments (each with all its values)."""
    base_url = settings.FEDERATION_NODE_URL + "/oai"
    root = etree.Element(f"{{{OAI_NS}}}OAI-PMH", nsmap={None: OAI_NS, "xsi": XSI})
    root.set(f"{{{XSI}}}schemaLocation", f"{OAI_NS} {OAI_SCHEMA}")
    _sub(root, "responseDate", datestamp(timezone.now()))
    request = _sub(root, "request", base_url)
    try:
        verbs = list(arguments.get("verb", ()))
        if len(verbs) != 1 or verbs[0] not in VERBS:
            raise OaiError("badVerb", "Missing, repeated or illegal verb.")
        verb = verbs[0]
        values = _single_values(arguments)
        _check_arguments(verb, values)
        # The request element echoes the arguments only when they were legal.
        for key, value in values.items():
            request.set(key, value)
        _dispatch(root, verb, values, base_url)
    except OaiError as error:
        if error.code in ("badVerb", "badArgument"):
            request.attrib.clear()
        for child in root[2:]:
            root.remove(child)
        element = _sub(root, "error", error.message)
        element.set("code", error.code)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def oai_arguments(query: Any) -> dict[str, list[str]]:
    """A QueryDict's arguments with all their values."""
    return {key: list(values) for key, values in query.lists()}
