"""Third-party OAI-PMH harvesters (sickle, oaipmh-scythe) harvest /oai on a live server
completely, three records a page, across resumption tokens: whole lists, datestamp windows,
sets, deleted records. Every response they get is validated against the schemas."""

from collections.abc import Iterator

import pytest
from django.conf import settings
from oaipmh_scythe import Scythe
from oaipmh_scythe.config import HTTPConfig
from sickle import Sickle

from apps.federation import oai
from apps.federation.models import FeedSequencer
from tests.federation.oai_support import Catalogue, build_catalogue, check_document


@pytest.fixture
def responses(monkeypatch) -> Iterator[list[bytes]]:
    """Every document the endpoint answers with, checked after the test (a failed check in the
    server's thread would only show as a harvester's error)."""
    answered: list[bytes] = []
    respond = oai.oai_response

    def recording(**kwargs):
        body = respond(**kwargs)
        answered.append(body)
        return body

    monkeypatch.setattr(oai, "oai_response", recording)
    yield answered
    for body in answered:
        check_document(body)


@pytest.fixture
def endpoint(live_server, settings, transactional_db, responses) -> str:
    settings.OAI_PAGE_SIZE = 3
    settings.FEDERATION_NODE_URL = live_server.url
    settings.OAI_ADMIN_EMAIL = "oai-admin@example.org"
    # A transactional test empties every table afterwards, the row a migration made included;
    # writes sequence the change feed on commit, which needs it.
    FeedSequencer.objects.get_or_create(pk=1)
    return f"{live_server.url}/oai"


@pytest.fixture
def catalogue(endpoint) -> Catalogue:
    return build_catalogue()


def ids(keys) -> set[str]:
    host = settings.FEDERATION_NODE_URL.split("://", 1)[1]
    return {f"oai:{host}:{key}" for key in keys}


def test_sickle_harvests_every_record_with_deletions(endpoint, catalogue, responses):
    records = list(Sickle(endpoint).ListRecords(metadataPrefix="oai_dc", ignore_deleted=False))
    live = {r.header.identifier for r in records if not r.deleted}
    deleted = {r.header.identifier for r in records if r.deleted}
    assert live == ids(catalogue.live)
    assert deleted == ids(catalogue.deleted)
    assert len(records) == len(live) + len(deleted)
    assert all(r.metadata["title"] for r in records if not r.deleted)
    assert all(not getattr(r, "metadata", None) for r in records if r.deleted)
    assert len(responses) == 3


def test_sickle_posts_a_windowed_set_harvest(endpoint, catalogue, responses):
    harvester = Sickle(endpoint, http_method="POST")
    headers = list(
        harvester.ListIdentifiers(
            **{
                "metadataPrefix": "oai_datacite",
                "set": "type:paper",
                "from": "2026-01-01T00:00:01Z",
            },
            ignore_deleted=False,
        )
    )
    papers_after_first = [k for k, moment in catalogue.live.items() if k.startswith("paper/")][1:]
    deleted_papers = [k for k in catalogue.deleted if k.startswith("paper/")]
    assert {h.identifier for h in headers} == ids(papers_after_first + deleted_papers)


def test_scythe_harvests_records_in_a_window(endpoint, catalogue, responses):
    with Scythe(endpoint) as scythe:
        identify = scythe.identify()
        assert identify.deletedRecord == "persistent"
        assert identify.granularity == "YYYY-MM-DDThh:mm:ssZ"
        records = list(
            scythe.list_records(
                metadata_prefix="oai_dc", from_="2026-01-01T01:00:00Z", until="2026-01-01T06:59:59Z"
            )
        )
    by_id = {r.header.identifier: r.deleted for r in records}
    live = [k for k, moment in catalogue.live.items() if moment.hour >= 1]
    deleted = [k for k, moment in catalogue.deleted.items() if moment.hour <= 6]
    assert by_id == {i: False for i in ids(live)} | {i: True for i in ids(deleted)}
    # Identify, then five records at three a page: the second page ends with an empty token.
    assert len(records) == 5 and len(responses) == 3


def test_scythe_harvests_an_institution_and_never_sees_hidden_records(
    endpoint, catalogue, responses
):
    with Scythe(endpoint, http_config=HTTPConfig(http_method="POST")) as scythe:
        everything = {h.identifier for h in scythe.list_identifiers(metadata_prefix="datacite")}
        rheinau = list(
            scythe.list_identifiers(metadata_prefix="oai_dc", set_="institution:rheinau")
        )
    assert everything == ids([*catalogue.live, *catalogue.deleted])
    assert not everything & ids(catalogue.hidden)
    live = {h.identifier for h in rheinau if not h.deleted}
    # The paper and model of Northbridge come first; the rest is Rheinau's.
    assert live == ids(list(catalogue.live)[2:])
