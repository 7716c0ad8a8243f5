"""Signed results: each result this node runs is an in-toto Statement in a DSSE envelope signed
with the node's key, checked by third parties offline with the published key only, served
under the result's own visibility, and verified when a peer's result arrives by sync."""

import base64
import copy
import io
import json
import subprocess
import sys
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from securesystemslib.dsse import Envelope
from securesystemslib.signer import SSlibKey

from apps.catalog.models import Benchmark, Visibility
from apps.evaluations.models import AttestationStatus, Result
from apps.federation import keys
from apps.federation.attestations import (
    AttestationRefused,
    result_attestation,
    sign_statement,
    verify_envelope,
    verify_peer_result,
)
from apps.federation.feed import feed_page
from apps.federation.models import Peer, PeerKey
from apps.federation.services import node_identity
from apps.federation.signatures import peer_keys_pin
from apps.federation.sync import SyncReport, page_apply
from apps.federation.verifier import PREDICATE_TYPE, AttestationInvalid, key_id_for
from tests.factories import MembershipFactory
from tests.federation.nodes import REPO

METRICS = {"accuracy": 0.91, "loss": 0.2}


@pytest.fixture
def public_result(member, institution, cpu_benchmark, make_model_version, post_result):
    version = make_model_version(member, institution, name="Open model")
    return post_result(member, version, cpu_benchmark, dict(METRICS))


def well_known() -> dict:
    return Client().get("/.well-known/research-exchange").json()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def payload_of(envelope: dict) -> dict:
    return json.loads(base64.b64decode(envelope["payload"]))


def with_payload(envelope: dict, statement: dict) -> dict:
    """The envelope with another payload and its signatures left as they were."""
    return {**envelope, "payload": b64(json.dumps(statement).encode())}


def test_a_result_is_signed_and_verifies_independently_with_the_published_key(public_result):
    envelope = result_attestation(public_result)
    public_result.refresh_from_db()
    assert public_result.attestation == envelope
    assert public_result.attestation_status == AttestationStatus.SIGNED

    # A third party: securesystemslib and the well-known document, nothing of the platform.
    document = well_known()
    [published] = [key for key in document["keys"] if key["status"] == "active"]
    raw = base64.urlsafe_b64decode(published["public_key"] + "=" * 2)
    key = SSlibKey.from_dict(
        published["key_id"],
        {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": raw.hex()}},
    )
    parsed = Envelope.from_dict(copy.deepcopy(envelope))
    assert set(parsed.verify([key], 1)) == {published["key_id"]}
    assert [signature["keyid"] for signature in envelope["signatures"]] == [published["key_id"]]
    assert envelope["payloadType"] == "application/vnd.in-toto+json"

    statement = json.loads(parsed.payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == PREDICATE_TYPE
    version = public_result.model_version
    dataset_file = public_result.benchmark.dataset.files.get()
    assert statement["subject"] == [
        {"name": "dataset/data.safetensors", "digest": {"sha256": dataset_file.artifact.sha256}},
        {
            "name": "model/model.safetensors",
            "digest": {"sha256": version.files.get().artifact.sha256},
        },
    ]
    predicate = statement["predicate"]
    assert predicate["metrics"] == METRICS
    assert predicate["node"] == {"id": document["node_id"], "name": settings.NODE_NAME}
    assert predicate["result"]["id"] == str(public_result.pk)
    assert predicate["result"]["url"].endswith(f"/results/{public_result.pk}/")
    assert predicate["model"]["name"] == "Open model"
    assert predicate["model"]["version"] == "1.0"
    assert predicate["model"]["origin"] is None
    assert predicate["benchmark"]["id"] == str(public_result.benchmark_id)
    assert predicate["evaluator"] == {"name": "smoke", "version": "0.1.0"}
    assert predicate["seed"] == 0 and predicate["batch_size"] == 64
    assert predicate["isolation"]["level"] == "full"
    assert predicate["paid_by"]["slug"] == public_result.institution.slug
    assert predicate["ran_by"]["institution"]["slug"] == public_result.node.institution.slug
    assert predicate["finished_at"] == public_result.finished_at.isoformat()
    assert "host" not in json.dumps(predicate)


def test_a_result_is_signed_once_its_transaction_commits(
    member, institution, cpu_benchmark, make_model_version, post_result,
    django_capture_on_commit_callbacks,
):  # fmt: skip
    version = make_model_version(member, institution)
    with django_capture_on_commit_callbacks(execute=True):
        result = post_result(member, version, cpu_benchmark, dict(METRICS))

    result.refresh_from_db()
    assert result.attestation_status == AttestationStatus.SIGNED
    keys_now = {key.key_id: key.public_key for key in keys.published_keys()}
    assert verify_envelope(result.attestation, keys_now)["predicate"]["metrics"] == METRICS
    assert result_attestation(result) == result.attestation  # signed once, kept


def test_sign_statement_and_verify_envelope_refuse_what_does_not_hold(db):
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "usage/1", "digest": {"sha256": "ab" * 32}}],
        "predicateType": "https://example.org/usage/v1",
        "predicate": {"gpu_seconds": 12},
    }
    envelope = sign_statement(statement)
    node_keys = {key.key_id: key.public_key for key in keys.published_keys()}
    assert verify_envelope(envelope, node_keys) == statement

    other = Ed25519PrivateKey.generate().public_key()
    other_text = base64.urlsafe_b64encode(
        other.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).decode()
    cases = {
        "unknown_key": (envelope, {key_id_for(other_text): other_text}),
        "bad_signature": (envelope, dict.fromkeys(node_keys, other_text)),
        "wrong_payload_type": ({**envelope, "payloadType": "text/plain"}, node_keys),
        "malformed": ({"payload": envelope["payload"]}, node_keys),
    }
    for code, (given, with_keys) in cases.items():
        with pytest.raises(AttestationInvalid) as refused:
            verify_envelope(given, with_keys)
        assert refused.value.code == code
    tampered = with_payload(envelope, {**statement, "predicate": {"gpu_seconds": 1}})
    with pytest.raises(AttestationInvalid, match="does not verify"):
        verify_envelope(tampered, node_keys)


def run_verifier(*arguments) -> subprocess.CompletedProcess:
    """The standalone verifier as `python -m` runs it, in an interpreter where Django cannot be
    imported at all."""
    program = (
        "import runpy, sys; sys.modules['django'] = None; "
        "sys.argv = ['rx-verify-result', *sys.argv[1:]]; "
        "runpy.run_module('apps.federation.verifier', run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, "-c", program, *map(str, arguments)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_the_standalone_verifier_accepts_a_good_attestation_and_refuses_tampered_ones(
    public_result, tmp_path
):
    envelope = result_attestation(public_result)
    document = well_known()
    node = tmp_path / "node.json"
    node.write_text(json.dumps(document))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(envelope))

    verified = run_verifier(good, node)
    assert verified.returncode == 0, verified.stderr
    assert "VERIFIED" in verified.stdout
    assert document["node_id"] in verified.stdout
    assert "Open model 1.0" in verified.stdout
    assert public_result.benchmark.name in verified.stdout
    assert "accuracy: 0.91" in verified.stdout

    # The key alone, raw or as the document's entry, verifies too.
    [entry] = document["keys"]
    for name, text in (("raw.key", entry["public_key"]), ("entry.json", json.dumps(entry))):
        (tmp_path / name).write_text(text)
        assert run_verifier(good, tmp_path / name).returncode == 0

    statement = payload_of(envelope)
    statement["predicate"]["metrics"]["accuracy"] = 0.99
    signature = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    signature[0] ^= 1
    other_key = Ed25519PrivateKey.generate().public_key()
    other = base64.urlsafe_b64encode(
        other_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).decode()
    refused = {
        "payload": (with_payload(envelope, statement), node, "does not verify"),
        "signature": (
            {**envelope, "signatures": [{"keyid": entry["key_id"], "sig": b64(signature)}]},
            node,
            "does not verify",
        ),
        "other key": (envelope, {"keys": [{**entry, "public_key": other}]}, "does not verify"),
        "unknown key": (envelope, other, "none of the keys given"),
    }
    for case, (attestation, key, reason) in refused.items():
        attestation_file = tmp_path / f"{case}.intoto.json"
        attestation_file.write_text(json.dumps(attestation))
        if not isinstance(key, type(node)):
            key_file = tmp_path / f"{case}.key"
            key_file.write_text(key if isinstance(key, str) else json.dumps(key))
            key = key_file
        outcome = run_verifier(attestation_file, key)
        assert outcome.returncode == 1, case
        assert "NOT VERIFIED" in outcome.stderr and reason in outcome.stderr, case
        assert "VERIFIED:" not in outcome.stdout, case


def test_the_verifier_refuses_a_document_of_another_node(public_result, tmp_path):
    envelope = result_attestation(public_result)
    document = {**well_known(), "node_id": "https://elsewhere.example"}
    (tmp_path / "node.json").write_text(json.dumps(document))
    (tmp_path / "result.json").write_text(json.dumps(envelope))

    outcome = run_verifier(tmp_path / "result.json", tmp_path / "node.json")

    assert outcome.returncode == 1
    assert "says" in outcome.stderr and settings.FEDERATION_NODE_URL in outcome.stderr


def test_the_verify_result_command_uses_this_nodes_keys_or_the_one_given(public_result, tmp_path):
    envelope = result_attestation(public_result)
    good = tmp_path / "result.json"
    good.write_text(json.dumps(envelope))
    node = tmp_path / "node.json"
    node.write_text(json.dumps(well_known()))

    for options in ({}, {"node_key": str(node)}):
        output = _call("verify_result", str(good), **options)
        assert "VERIFIED" in output and "accuracy: 0.91" in output

    statement = payload_of(envelope)
    statement["predicate"]["metrics"] = {"accuracy": 1.0}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(with_payload(envelope, statement)))
    with pytest.raises(CommandError, match="NOT VERIFIED"):
        _call("verify_result", str(bad))


def _call(*args, **options) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


@pytest.fixture
def results_by_visibility(member, institution, cpu_benchmark, make_model_version, post_result):
    made = {}
    for visibility in (Visibility.PUBLIC, Visibility.INSTITUTION, Visibility.PRIVATE):
        version = make_model_version(member, institution, name=f"{visibility} model")
        version.model.visibility = visibility
        version.model.save(update_fields=["visibility"])
        made[visibility] = post_result(member, version, cpu_benchmark, dict(METRICS))
    return made


@pytest.mark.parametrize(
    ("actor", "sees"),
    [
        ("anonymous", {Visibility.PUBLIC}),
        ("outsider", {Visibility.PUBLIC}),
        ("colleague", {Visibility.PUBLIC, Visibility.INSTITUTION}),
        ("member", {Visibility.PUBLIC, Visibility.INSTITUTION, Visibility.PRIVATE}),
    ],
)
def test_the_attestation_is_served_to_whoever_may_see_the_result(
    actor, sees, api_client, actors, institution, results_by_visibility
):
    user = (
        MembershipFactory(institution=institution).user if actor == "colleague" else actors[actor]
    )
    if user is not None:
        api_client.force_authenticate(user)
    missing = api_client.get("/api/v1/results/999999/attestation")
    assert missing.status_code == 404

    for visibility, result in results_by_visibility.items():
        response = api_client.get(f"/api/v1/results/{result.pk}/attestation")
        if visibility not in sees:
            assert response.status_code == 404, visibility
            assert response.json() == missing.json(), visibility  # hidden is missing
            continue
        assert response.status_code == 200, visibility
        assert response["Content-Disposition"] == (
            f'attachment; filename="result-{result.pk}.intoto.json"'
        )
        node_keys = {key["key_id"]: key["public_key"] for key in well_known()["keys"]}
        statement = verify_envelope(response.json(), node_keys)
        assert statement["predicate"]["result"]["id"] == str(result.pk)
        detail = api_client.get(f"/api/v1/results/{result.pk}/").json()
        assert detail["attestation_status"] == AttestationStatus.SIGNED
        assert detail["attestation_url"].endswith(f"/api/v1/results/{result.pk}/attestation")


def test_the_result_list_says_whether_a_result_is_signed(api_client, public_result):
    [row] = api_client.get("/api/v1/results/").json()["results"]
    assert row["attestation_status"] == ""  # not asked for yet
    assert row["attestation_url"].endswith(f"/results/{public_result.pk}/attestation")

    api_client.get(row["attestation_url"])

    [row] = api_client.get("/api/v1/results/").json()["results"]
    assert row["attestation_status"] == "signed"


def test_the_result_page_states_the_attestation_and_how_to_verify_it(public_result):
    page = Client().get(f"/results/{public_result.pk}/").content.decode()

    assert "Signed by this node" in page
    assert f"/api/v1/results/{public_result.pk}/attestation" in page
    assert f"rx-verify-result result-{public_result.pk}.intoto.json node.json" in page
    assert settings.FEDERATION_NODE_URL + "/.well-known/research-exchange" in page


def read_feed() -> list[dict]:
    records, cursor = [], ""
    while True:
        page = feed_page(cursor=cursor, limit=1000)
        records += page["records"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return records


@pytest.fixture
def loopback_peer(db):
    """This node as its own peer (see test_feed.py), with its keys pinned as a peer's are."""
    peer = Peer.objects.create(node_id=settings.FEDERATION_NODE_URL, state=Peer.State.APPROVED)
    peer_keys_pin(peer=peer, identity=node_identity())
    return peer


def mirrored_results() -> list[Result]:
    return list(Result.objects.exclude(origin_node=""))


def sync(peer: Peer, records: list[dict]) -> SyncReport:
    report = SyncReport()
    page_apply(peer=peer, records=records, report=report)
    return report


def test_a_peers_signed_result_is_mirrored_as_verified(public_result, loopback_peer):
    records = read_feed()
    [fed] = [record for record in records if record["type"] == "result"]
    assert fed["data"]["attestation"] == Result.objects.get(pk=public_result.pk).attestation

    report = sync(loopback_peer, records)

    assert report.rejected == 0 and report.attestations_refused == 0
    [mirrored] = mirrored_results()
    assert mirrored.attestation_status == AttestationStatus.VERIFIED
    assert mirrored.attestation == fed["data"]["attestation"]


def test_a_peers_result_without_an_attestation_or_with_an_unpinned_key_is_unverifiable(
    public_result, loopback_peer
):
    records = read_feed()
    for record in records:
        if record["type"] == "result":
            record["data"]["attestation"] = None
    assert sync(loopback_peer, records).rejected == 0
    [mirrored] = mirrored_results()
    assert mirrored.attestation_status == AttestationStatus.UNVERIFIABLE

    loopback_peer.keys.all().delete()
    assert sync(loopback_peer, read_feed()).rejected == 0
    mirrored.refresh_from_db()
    assert mirrored.attestation_status == AttestationStatus.UNVERIFIABLE
    assert mirrored.attestation is not None


@pytest.mark.parametrize("tampered", ["metrics", "payload", "signature", "files"])
def test_a_peers_result_whose_attestation_does_not_hold_is_refused(
    tampered, public_result, loopback_peer
):
    records = read_feed()
    [fed] = [record for record in records if record["type"] == "result"]
    envelope = fed["data"]["attestation"]
    statement = payload_of(envelope)
    if tampered == "metrics":
        fed["data"]["metrics"] = {**fed["data"]["metrics"], "accuracy": 0.99}
    elif tampered == "payload":
        statement["predicate"]["metrics"]["accuracy"] = 0.99
        fed["data"]["metrics"]["accuracy"] = 0.99
        fed["data"]["attestation"] = with_payload(envelope, statement)
    elif tampered == "signature":
        signature = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
        signature[-1] ^= 1
        envelope["signatures"][0]["sig"] = b64(signature)
    else:
        # Signed, but of other files than the mirrored version holds.
        statement["subject"][1]["digest"]["sha256"] = "0" * 64
        fed["data"]["attestation"] = sign_statement(statement)

    report = sync(loopback_peer, records)

    assert not mirrored_results()
    assert report.rejected == 1 and report.attestations_refused == 1
    [refusal] = report.refusals
    assert refusal.startswith(f"result {fed['id']}: its attestation is refused")
    assert Benchmark.objects.exclude(origin_node="").exists()  # the rest applied


def test_a_result_signed_by_a_retiring_key_stays_verified(
    member, institution, cpu_benchmark, make_model_version, post_result, loopback_peer
):
    version = make_model_version(member, institution)
    result = post_result(member, version, cpu_benchmark, dict(METRICS), days_ago=2)
    envelope = result_attestation(result)
    old = keys.node_key_ensure()
    keys.node_key_rotate()
    peer_keys_pin(peer=loopback_peer, identity=node_identity())
    retiring = PeerKey.objects.get(peer=loopback_peer, key_id=old.key_id)
    assert retiring.retiring_until > timezone.now()

    report = sync(loopback_peer, read_feed())
    assert report.rejected == 0
    [mirrored] = mirrored_results()
    assert mirrored.attestation_status == AttestationStatus.VERIFIED

    files = {
        "metrics": METRICS,
        "model_sha256s": [version.files.get().artifact.sha256],
        "dataset_sha256s": [cpu_benchmark.dataset.files.get().artifact.sha256],
    }
    # Past its grace now, but the result finished, and reached us, while the key was valid.
    retiring.retiring_until = result.finished_at + timedelta(days=1)
    retiring.save()
    status = verify_peer_result(
        peer=loopback_peer, envelope=envelope, received_at=result.finished_at, **files
    )
    assert status == AttestationStatus.VERIFIED
    # The same "old" result arriving only now: a key leaked after its grace signs nothing.
    with pytest.raises(AttestationRefused, match="no longer valid"):
        verify_peer_result(peer=loopback_peer, envelope=envelope, **files)

    retiring.retiring_until = result.finished_at - timedelta(seconds=1)
    retiring.save()
    with pytest.raises(AttestationRefused, match="no longer valid"):
        verify_peer_result(peer=loopback_peer, envelope=envelope, **files)


def test_a_benchmarks_reproduction_tolerance_reaches_the_mirror(
    public_result, cpu_benchmark, loopback_peer
):
    cpu_benchmark.reproduction_tolerance = 0.005
    cpu_benchmark.save()

    assert sync(loopback_peer, read_feed()).rejected == 0

    mirrored = Benchmark.objects.exclude(origin_node="").get()
    assert mirrored.reproduction_tolerance == 0.005


def test_a_negative_reproduction_tolerance_from_a_peer_is_refused(cpu_benchmark, loopback_peer):
    records = read_feed()
    for record in records:
        if record["type"] == "benchmark":
            record["data"]["reproduction_tolerance"] = -1

    report = sync(loopback_peer, records)

    assert report.rejected == 1
    assert not Benchmark.objects.exclude(origin_node="").exists()


def test_benchmark_authors_set_the_reproduction_tolerance(
    api_client, member, cpu_benchmark, institution
):
    api_client.force_authenticate(member)
    url = f"/api/v1/benchmarks/{cpu_benchmark.pk}/"

    refused = api_client.patch(url, {"reproduction_tolerance": -0.1}, format="json")
    assert refused.status_code == 400
    assert "reproduction_tolerance" in refused.json()["error"]["fields"]

    response = api_client.patch(url, {"reproduction_tolerance": 0.01}, format="json")
    assert response.status_code == 200
    assert response.json()["reproduction_tolerance"] == 0.01
    cpu_benchmark.refresh_from_db()
    assert cpu_benchmark.reproduction_tolerance == 0.01
