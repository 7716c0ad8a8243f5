"""OAI-PMH 2.0 at /oai: every verb, every error, the metadata formats, datestamp windows, sets,
deleted records and stateless resumption tokens. Every response is validated against the
OAI-PMH schema (and each oai_dc record against oai_dc.xsd) by `check_document`.

Third-party harvesters run against a live server in test_oai_harvesters.py."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client

from apps.catalog.models import Paper
from apps.federation import oai
from tests.federation.oai_support import NS, T0, build_catalogue, check_document

HOST = "testserver"


@pytest.fixture(autouse=True)
def _oai_settings(settings):
    settings.OAI_PAGE_SIZE = 3
    settings.FEDERATION_NODE_URL = f"http://{HOST}"
    settings.NODE_NAME = "Northbridge Exchange"
    settings.OAI_ADMIN_EMAIL = "oai-admin@example.org"


@pytest.fixture
def catalogue(db):
    return build_catalogue()


def request(client: Client | None = None, method: str = "get", **arguments):
    """Asks /oai and returns the validated response document."""
    client = client or Client()
    response = getattr(client, method)("/oai", arguments)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/xml; charset=utf-8"
    return check_document(response.content)


def oai_id(key: str) -> str:
    return f"oai:{HOST}:{key}"


def error_code(document) -> str | None:
    error = document.find("oai:error", NS)
    return None if error is None else error.get("code")


def harvest(verb: str = "ListIdentifiers", client: Client | None = None, **arguments):
    """Follows resumption tokens to the end: (headers, resumptionToken elements)."""
    headers, tokens = [], []
    while True:
        document = request(client, verb=verb, **arguments)
        assert error_code(document) is None, document.findtext("oai:error", namespaces=NS)
        listing = document.find(f"oai:{verb}", NS)
        headers += listing.findall(".//oai:header", NS)
        token = listing.find("oai:resumptionToken", NS)
        if token is None:
            return headers, tokens
        tokens.append(token)
        if not token.text:
            return headers, tokens
        arguments = {"resumptionToken": token.text}


def identifiers(headers) -> dict[str, bool]:
    """identifier → deleted?"""
    return {
        h.findtext("oai:identifier", namespaces=NS): h.get("status") == "deleted" for h in headers
    }


def expected(catalogue, live=None, deleted=None) -> dict[str, bool]:
    live = catalogue.live if live is None else live
    deleted = catalogue.deleted if deleted is None else deleted
    return {oai_id(key): False for key in live} | {oai_id(key): True for key in deleted}


def test_identify_describes_the_repository(catalogue):
    document = request(verb="Identify")
    identify = document.find("oai:Identify", NS)
    text = {child.tag.split("}")[1]: child.text for child in identify}
    assert text == {
        "repositoryName": "Northbridge Exchange",
        "baseURL": f"http://{HOST}/oai",
        "protocolVersion": "2.0",
        "adminEmail": "oai-admin@example.org",
        "earliestDatestamp": "2026-01-01T00:00:00Z",
        "deletedRecord": "persistent",
        "granularity": "YYYY-MM-DDThh:mm:ssZ",
    }
    assert document.find("oai:request", NS).attrib == {"verb": "Identify"}
    assert document.findtext("oai:request", namespaces=NS) == f"http://{HOST}/oai"


def test_list_metadata_formats(catalogue):
    document = request(verb="ListMetadataFormats")
    prefixes = document.xpath("//oai:metadataPrefix/text()", namespaces=NS)
    assert prefixes == ["oai_dc", "oai_datacite", "datacite"]
    paper = oai_id(next(iter(catalogue.live)))
    assert error_code(request(verb="ListMetadataFormats", identifier=paper)) is None
    deleted = oai_id(next(iter(catalogue.deleted)))
    assert error_code(request(verb="ListMetadataFormats", identifier=deleted)) is None


def test_list_sets_names_types_and_local_institutions_only(catalogue):
    document = request(verb="ListSets")
    specs = document.xpath("//oai:setSpec/text()", namespaces=NS)
    assert specs == [
        "type", "type:benchmark", "type:dataset", "type:model", "type:paper",
        "institution", "institution:northbridge", "institution:rheinau",
    ]  # fmt: skip


def test_list_identifiers_is_complete_across_resumption_tokens(catalogue):
    headers, tokens = harvest(metadataPrefix="oai_dc")
    assert identifiers(headers) == expected(catalogue)
    assert len(headers) == 7
    # 7 records, 3 a page: two tokens with a value, then an empty one on the last page.
    assert [t.text is not None for t in tokens] == [True, True, False]
    assert [t.get("cursor") for t in tokens] == ["0", "3", "6"]
    assert {t.get("completeListSize") for t in tokens} == {"7"}
    stamps = [h.findtext("oai:datestamp", namespaces=NS) for h in headers]
    assert stamps == sorted(stamps)


def test_a_list_that_fits_one_page_has_no_token(catalogue):
    document = request(verb="ListIdentifiers", metadataPrefix="oai_dc", set="type:model")
    assert document.find(".//oai:resumptionToken", NS) is None
    assert len(document.findall(".//oai:header", NS)) == 2


def test_list_records_carries_metadata_except_for_deleted_records(catalogue):
    for prefix in ("oai_dc", "oai_datacite", "datacite"):
        document_records = []
        arguments = {"metadataPrefix": prefix}
        while True:
            document = request(verb="ListRecords", **arguments)
            document_records += document.findall(".//oai:record", NS)
            token = document.findtext(".//oai:resumptionToken", namespaces=NS)
            if not token:
                break
            arguments = {"resumptionToken": token}
        assert len(document_records) == 7
        for record in document_records:
            deleted = record.find("oai:header", NS).get("status") == "deleted"
            assert (record.find("oai:metadata", NS) is None) == deleted


def test_get_record_in_dublin_core(catalogue):
    paper = Paper.objects.get(title__startswith="Sparse")
    document = request(
        verb="GetRecord", identifier=oai_id(f"paper/{paper.pk}"), metadataPrefix="oai_dc"
    )
    header = document.find(".//oai:header", NS)
    assert header.findtext("oai:datestamp", namespaces=NS) == "2026-01-01T00:00:00Z"
    assert header.xpath("oai:setSpec/text()", namespaces=NS) == [
        "type:paper",
        "institution:northbridge",
    ]
    dc = document.find(".//oai_dc:dc", NS)
    # Characters XML 1.0 forbids are dropped, not escaped into an unreadable document.
    assert dc.findtext("dc:title", namespaces=NS) == "Sparse attention at scale"
    assert dc.xpath("dc:creator/text()", namespaces=NS) == ["Ada Lovelace", "Alan Turing"]
    assert f"http://{HOST}/papers/{paper.pk}/" in dc.xpath("dc:identifier/text()", namespaces=NS)
    assert "https://doi.org/10.12345/sparse.2025" in dc.xpath("dc:identifier/text()", namespaces=NS)


def test_get_record_in_datacite(catalogue):
    paper = Paper.objects.get(title__startswith="Sparse")
    document = request(
        verb="GetRecord", identifier=oai_id(f"paper/{paper.pk}"), metadataPrefix="oai_datacite"
    )
    resource = document.find(".//w:payload/dcite:resource", NS)
    identifier = resource.find("dcite:identifier", NS)
    assert (identifier.text, identifier.get("identifierType")) == ("10.12345/sparse.2025", "DOI")
    orcid = resource.find("dcite:creators/dcite:creator/dcite:nameIdentifier", NS)
    assert orcid.text == "https://orcid.org/0000-0002-1825-0097"
    assert resource.find("dcite:resourceType", NS).get("resourceTypeGeneral") == "JournalArticle"
    assert resource.findtext("dcite:publicationYear", namespaces=NS) == "2025"

    dataset_key = next(key for key in catalogue.live if key.startswith("dataset/"))
    document = request(verb="GetRecord", identifier=oai_id(dataset_key), metadataPrefix="datacite")
    resource = document.find(".//oai:metadata/dcite:resource", NS)
    assert resource.find("dcite:identifier", NS).get("identifierType") == "URL"
    assert (
        resource.find("dcite:publisher", NS).get("publisherIdentifier")
        == "https://ror.org/05dxps055"
    )
    assert resource.findtext("dcite:rightsList/dcite:rights", namespaces=NS) == "CC-BY-4.0 OR MIT"


def test_get_record_of_a_deleted_record_is_a_bare_deleted_header(catalogue):
    for key, changed_at in catalogue.deleted.items():
        document = request(verb="GetRecord", identifier=oai_id(key), metadataPrefix="oai_dc")
        header = document.find(".//oai:header", NS)
        assert header.get("status") == "deleted"
        assert header.findtext("oai:datestamp", namespaces=NS) == changed_at.strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        assert document.find(".//oai:metadata", NS) is None


def test_hidden_and_mirrored_records_do_not_exist(catalogue):
    for key in catalogue.hidden:
        document = request(verb="GetRecord", identifier=oai_id(key), metadataPrefix="oai_dc")
        assert error_code(document) == "idDoesNotExist", key


@pytest.mark.parametrize(
    ("window", "hours", "deleted_hours"),
    [
        ({"from": "2026-01-01T01:00:00Z"}, [1, 2, 3, 4], [6, 7]),
        ({"until": "2026-01-01T01:00:00Z"}, [0, 1], []),
        ({"from": "2026-01-01T02:00:00Z", "until": "2026-01-01T06:00:00Z"}, [2, 3, 4], [6]),
        ({"from": "2026-01-01", "until": "2026-01-01"}, [0, 1, 2, 3, 4], [6, 7]),
    ],
)
def test_from_and_until_select_by_datestamp(catalogue, window, hours, deleted_hours):
    headers, _ = harvest(metadataPrefix="oai_dc", **window)
    live = {
        k: v for k, v in catalogue.live.items() if v in [T0 + timedelta(hours=h) for h in hours]
    }
    deleted = {
        k: v
        for k, v in catalogue.deleted.items()
        if v in [T0 + timedelta(hours=h) for h in deleted_hours]
    }
    assert identifiers(headers) == expected(catalogue, live, deleted)


def test_until_covers_its_whole_second(catalogue):
    paper = Paper.objects.get(title__startswith="Sparse")
    Paper.objects.filter(pk=paper.pk).update(updated_at=T0 + timedelta(microseconds=700_000))
    headers, _ = harvest(metadataPrefix="oai_dc", until="2026-01-01T00:00:00Z")
    assert oai_id(f"paper/{paper.pk}") in identifiers(headers)


@pytest.mark.parametrize(
    ("set_spec", "prefixes", "deleted"),
    [
        ("type:paper", ["paper/"], True),
        ("type:benchmark", ["benchmark/"], False),
        ("type", ["paper/", "model/", "dataset/", "benchmark/"], True),
    ],
)
def test_sets_by_type(catalogue, set_spec, prefixes, deleted):
    headers, _ = harvest(metadataPrefix="oai_dc", set=set_spec)
    live = {k: v for k, v in catalogue.live.items() if k.startswith(tuple(prefixes))}
    gone = (
        {k: v for k, v in catalogue.deleted.items() if k.startswith(tuple(prefixes))}
        if deleted
        else {}
    )
    assert identifiers(headers) == expected(catalogue, live, gone)


def test_sets_by_institution(catalogue):
    headers, _ = harvest(metadataPrefix="oai_dc", set="institution:rheinau")
    found = identifiers(headers)
    # The downgraded model still exists, so its deletion is placed in its institution.
    assert [key for key, deleted in found.items() if deleted] == [
        oai_id(key) for key in catalogue.deleted if key.startswith("model/")
    ]
    assert len([key for key, deleted in found.items() if not deleted]) == 3
    for header in headers:
        if header.get("status") != "deleted":
            assert "institution:rheinau" in header.xpath("oai:setSpec/text()", namespaces=NS)


@pytest.mark.parametrize(
    "set_spec", ["institution:peer-lab", "institution:nowhere", "type:result", "other"]
)
def test_sets_that_hold_nothing_match_no_records(catalogue, set_spec):
    document = request(verb="ListIdentifiers", metadataPrefix="oai_dc", set=set_spec)
    assert error_code(document) == "noRecordsMatch"


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({}, "badVerb"),
        ({"verb": "Harvest"}, "badVerb"),
        ({"verb": ["Identify", "Identify"]}, "badVerb"),
        ({"verb": "Identify", "metadataPrefix": "oai_dc"}, "badArgument"),
        ({"verb": "ListRecords"}, "badArgument"),
        ({"verb": "ListRecords", "metadataPrefix": ["oai_dc", "oai_dc"]}, "badArgument"),
        ({"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "yesterday"}, "badArgument"),
        (
            {"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "2026-01-01T00:00Z"},
            "badArgument",
        ),
        ({"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "2026-02-30"}, "badArgument"),
        (
            {
                "verb": "ListRecords",
                "metadataPrefix": "oai_dc",
                "from": "2026-01-01",
                "until": "2026-01-02T00:00:00Z",
            },
            "badArgument",
        ),
        (
            {
                "verb": "ListRecords",
                "metadataPrefix": "oai_dc",
                "from": "2026-01-02",
                "until": "2026-01-01",
            },
            "badArgument",
        ),
        ({"verb": "ListRecords", "metadataPrefix": "oai_dc", "set": "a b"}, "badArgument"),
        (
            {"verb": "ListRecords", "metadataPrefix": "oai_dc", "resumptionToken": "x"},
            "badArgument",
        ),
        ({"verb": "GetRecord", "identifier": "oai:testserver:paper/1"}, "badArgument"),
        ({"verb": "ListRecords", "metadataPrefix": "marc21"}, "cannotDisseminateFormat"),
        ({"verb": "ListRecords", "metadataPrefix": "oai dc"}, "badArgument"),
        (
            {
                "verb": "GetRecord",
                "identifier": "oai:testserver:paper/999999",
                "metadataPrefix": "oai_dc",
            },
            "idDoesNotExist",
        ),
        (
            {
                "verb": "GetRecord",
                "identifier": "oai:elsewhere:paper/1",
                "metadataPrefix": "oai_dc",
            },
            "idDoesNotExist",
        ),
        (
            {"verb": "GetRecord", "identifier": "paper/1", "metadataPrefix": "oai_dc"},
            "idDoesNotExist",
        ),
        ({"verb": "ListMetadataFormats", "identifier": "oai:testserver:job/1"}, "idDoesNotExist"),
        (
            {"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "2030-01-01"},
            "noRecordsMatch",
        ),
        ({"verb": "ListRecords", "resumptionToken": "forged"}, "badResumptionToken"),
        ({"verb": "ListSets", "resumptionToken": "anything"}, "badResumptionToken"),
    ],
)
def test_protocol_errors(catalogue, arguments, code):
    document = request(**arguments)
    assert error_code(document) == code
    assert document.find("oai:error", NS).text
    if code in ("badVerb", "badArgument"):
        # The request element echoes the arguments only when they were legal.
        assert document.find("oai:request", NS).attrib == {}
    else:
        assert document.find("oai:request", NS).get("verb") == arguments["verb"]


def test_get_record_of_a_record_with_metadata_in_an_unknown_format(catalogue):
    key = next(iter(catalogue.live))
    document = request(verb="GetRecord", identifier=oai_id(key), metadataPrefix="mods")
    assert error_code(document) == "cannotDisseminateFormat"


def test_post_form_is_answered_like_get(catalogue):
    posted = request(
        method="post", verb="ListIdentifiers", metadataPrefix="oai_dc", set="type:paper"
    )
    got = request(verb="ListIdentifiers", metadataPrefix="oai_dc", set="type:paper")
    assert identifiers(posted.findall(".//oai:header", NS)) == identifiers(
        got.findall(".//oai:header", NS)
    )
    assert error_code(request(method="post", verb="Identify", until=["a", "b"])) == "badArgument"
    # The query-string NUL check does not see a form body: a NUL there is a badArgument, not a 500.
    nul = request(method="post", verb="ListIdentifiers", metadataPrefix="oai_dc", set="type:\x00")
    assert error_code(nul) == "badArgument"


def test_a_resumption_token_survives_a_restart_and_cannot_be_forged(catalogue, monkeypatch):
    first = request(verb="ListIdentifiers", metadataPrefix="oai_dc")
    token = first.findtext(".//oai:resumptionToken", namespaces=NS)
    rest, _ = harvest(resumptionToken=token)
    cache.clear()
    # A fresh client and an empty cache: nothing but the token carries the harvest on.
    again, _ = harvest(client=Client(), resumptionToken=token)
    assert identifiers(again) == identifiers(rest)
    assert identifiers(first.findall(".//oai:header", NS)) | identifiers(rest) == expected(
        catalogue
    )

    tampered = token[:-3] + ("aaa" if token[-3:] != "aaa" else "bbb")
    assert (
        error_code(request(verb="ListIdentifiers", resumptionToken=tampered))
        == "badResumptionToken"
    )
    assert error_code(request(verb="ListRecords", resumptionToken=token)) == "badResumptionToken"
    monkeypatch.setattr(oai, "TOKEN_MAX_AGE", timedelta(seconds=-1))
    assert (
        error_code(request(verb="ListIdentifiers", resumptionToken=token)) == "badResumptionToken"
    )


def test_records_changed_during_a_harvest_are_not_skipped(catalogue):
    first = request(verb="ListIdentifiers", metadataPrefix="oai_dc")
    token = first.findtext(".//oai:resumptionToken", namespaces=NS)
    # A new record and one that moves: both get datestamps after everything already listed.
    new = Paper.objects.create(title="Late arrival", institution=catalogue.institutions["north"])
    rest, _ = harvest(resumptionToken=token)
    seen = list(identifiers(first.findall(".//oai:header", NS))) + list(identifiers(rest))
    assert len(seen) == len(set(seen))
    assert set(seen) == set(expected(catalogue)) | {oai_id(f"paper/{new.pk}")}


def test_a_page_costs_the_same_queries_whatever_its_size(
    catalogue, settings, django_assert_max_num_queries
):
    north = catalogue.institutions["north"]
    Paper.objects.bulk_create(Paper(title=f"Bulk {n}", institution=north) for n in range(40))
    settings.OAI_PAGE_SIZE = 50
    # 4 types + tombstones for the headers, 5 counts, 4 row reads and 4 prefetches.
    with django_assert_max_num_queries(20):
        document = request(verb="ListRecords", metadataPrefix="oai_datacite")
    assert len(document.findall(".//oai:record", NS)) == 47


def test_the_portal_links_the_endpoint(catalogue):
    page = Client().get("/")
    assert 'href="/oai?verb=Identify"' in page.content.decode()
    assert Client().put("/oai").status_code == 405
