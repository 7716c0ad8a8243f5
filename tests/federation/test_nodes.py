"""Federation between real nodes: separate server processes with their own databases, var
dirs and keys, peered through their APIs, syncing over HTTP with signed requests."""

import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.federation.nodes import REPO, Node, peer, peer_id, start_nodes

pytestmark = pytest.mark.timeout(900)

PUBLISH = """
from apps.accounts.models import Institution, User
from apps.catalog import services
from apps.catalog.models import Visibility
from apps.catalog.uploads import uploaded_file_from_bytes

user = User.objects.create_user("{prefix}-author", password=None)
institution = Institution.objects.create(name="{prefix} University", slug="{prefix}-uni",
                                         country="NL")
institution.memberships.create(user=user, role="admin")
for number in range({count}):
    services.paper_create(user=user, institution=institution, title=f"{prefix} paper {{number}}",
                          visibility=Visibility.PUBLIC)
services.paper_create(user=user, institution=institution, title="{prefix} private draft",
                      visibility=Visibility.PRIVATE)
services.paper_create(user=user, institution=institution, title="{prefix} internal memo",
                      visibility=Visibility.INSTITUTION)
weights = services.artifact_store(user=user, upload=uploaded_file_from_bytes(
    {weights!r}, "weights.safetensors"))
model = services.model_create(user=user, institution=institution, name="{prefix} model",
                              slug="{prefix}-model", license="MIT")
services.version_create(user=user, model=model, label="1.0", publish=True,
                        files=[("weights.safetensors", weights.sha256)])
print(model.pk, weights.sha256, weights.storage_name)
"""


def safetensors(values: int) -> bytes:
    from tests.catalog.samples import safetensors_bytes

    return safetensors_bytes(values)


@pytest.fixture(scope="module")
def nodes(tmp_path_factory, django_db_blocker):
    """Node A publishes, node B mirrors A, node C is a stranger to both."""
    folder = tmp_path_factory.mktemp("nodes")
    a = Node("A", folder / "a", page_size=100)
    b = Node("B", folder / "b", page_size=100)
    c = Node("C", folder / "c")
    try:
        with django_db_blocker.unblock():
            start_nodes([a, b, c])
        yield a, b, c
    finally:
        for node in (a, b, c):
            with django_db_blocker.unblock():
                node.stop()


def mirrored_titles(node: Node, origin: Node) -> list[str]:
    titles, page = [], 1
    while True:
        body = node.json(
            "GET", "papers/", params={"origin": origin.url, "page": page, "page_size": 100}
        )
        titles += [paper["title"] for paper in body["results"]]
        if not body.get("next"):
            return titles
        page += 1


@pytest.fixture(scope="module")
def peered(nodes):
    a, b, _c = nodes
    weights = safetensors(64)
    output = a.python(PUBLISH.format(prefix="alpha", count=1000, weights=weights))
    model_id, sha256, storage_name = output.split()
    peer(b, a)  # B's staff asks A, A's staff approves
    return {"model_id": model_id, "sha256": sha256, "storage_name": storage_name, "bytes": weights}


def sync(node: Node, other: Node) -> dict:
    return node.json("POST", f"federation/peers/{peer_id(node, other)}/sync/")


def test_peering_is_asked_approved_and_recorded_on_both_sides(nodes, peered):
    a, b, _ = nodes
    on_b = b.json("GET", f"federation/peers/{peer_id(b, a)}/")
    on_a = a.json("GET", f"federation/peers/{peer_id(a, b)}/")

    assert on_b["state"] == "approved"
    assert on_a["state"] == "approved"
    # B asked (its operator), A's operator approved; each side records who did what.
    assert [e["to_state"] for e in reversed(on_b["events"])] == ["requested", "approved"]
    assert on_b["events"][-1]["actor"] == "operator"
    assert on_b["events"][0]["by_peer"] is True
    assert [e["to_state"] for e in reversed(on_a["events"])] == ["pending", "approved"]
    assert on_a["events"][-1]["by_peer"] is True
    assert on_a["events"][0]["actor"] == "operator"
    assert on_a["name"] == "Node B"


def test_a_thousand_public_records_are_mirrored_and_nothing_else(nodes, peered):
    a, b, _ = nodes

    report = sync(b, a)

    titles = mirrored_titles(b, a)
    assert len(titles) == 1000
    assert len(set(titles)) == 1000
    assert report["rejected"] == 0 and report["pending"] == 0
    assert report["pages"] >= 10
    for hidden in ("alpha private draft", "alpha internal memo"):
        assert b.json("GET", "search/", params={"q": hidden})["count"] == 0
    paper = b.json("GET", "papers/", params={"origin": a.url, "page_size": 1})["results"][0]
    assert paper["origin"]["node"] == a.url
    assert paper["origin"]["url"].startswith(a.url + "/papers/")
    assert b.json("GET", "papers/", params={"origin": "local"})["count"] == 0
    again = sync(b, a)
    assert again["upserted"] == 0
    assert len(mirrored_titles(b, a)) == 1000


def test_an_update_a_delete_and_a_downgrade_reach_the_mirror(nodes, peered):
    a, b, _ = nodes
    sync(b, a)
    a.python(
        "from apps.catalog.models import Paper, Visibility\n"
        "Paper.objects.filter(title='alpha paper 1').update(title='x')\n"  # no signal: unchanged
        "paper = Paper.objects.get(title='alpha paper 2')\n"
        "paper.title = 'alpha paper 2 (revised)'\n"
        "paper.save()\n"
        "Paper.objects.get(title='alpha paper 3').delete()\n"
        "downgraded = Paper.objects.get(title='alpha paper 4')\n"
        "downgraded.visibility = Visibility.INSTITUTION\n"
        "downgraded.save()\n"
    )

    report = sync(b, a)

    titles = set(mirrored_titles(b, a))
    assert "alpha paper 2 (revised)" in titles and "alpha paper 2" not in titles
    assert "alpha paper 3" not in titles
    assert "alpha paper 4" not in titles
    assert report["deleted"] == 2
    assert len(titles) == 998


def test_a_mirrored_record_is_read_only(nodes, peered):
    a, b, _ = nodes
    sync(b, a)
    paper = b.json("GET", "papers/", params={"origin": a.url, "page_size": 1})["results"][0]

    response = b.api("PATCH", f"papers/{paper['id']}/", json={"title": "Changed here"})

    assert response.status_code == 403
    assert "mirrored from" in response.json()["error"]["message"]


def test_a_mirrored_file_is_fetched_from_its_origin_checked_and_kept(nodes, peered):
    a, b, _ = nodes
    sync(b, a)
    sha256 = peered["sha256"]

    first = b.api("GET", f"artifacts/{sha256}/download")
    assert first.status_code == 200, first.text
    assert hashlib.sha256(first.content).hexdigest() == sha256
    stored = Path(b.env["PLATFORM_VAR_DIR"]) / "media" / "artifacts" / peered["storage_name"]
    assert stored.read_bytes() == peered["bytes"]

    second = b.api("GET", f"artifacts/{sha256}/download")
    assert second.content == peered["bytes"]


def test_a_file_whose_bytes_changed_at_the_origin_is_refused_and_not_stored(nodes, peered):
    a, b, _ = nodes
    weights = safetensors(32)
    output = a.python(PUBLISH.format(prefix="beta", count=0, weights=weights))
    _, sha256, storage_name = output.split()
    sync(b, a)
    original = Path(a.env["PLATFORM_VAR_DIR"]) / "media" / "artifacts" / storage_name
    original.write_bytes(bytes(len(weights)))  # same size, other bytes: a lying origin

    response = b.api("GET", f"artifacts/{sha256}/download")

    assert response.status_code == 424
    assert "nothing was stored" in response.json()["error"]["message"]
    assert not (Path(b.env["PLATFORM_VAR_DIR"]) / "media" / "artifacts" / storage_name).exists()
    assert sha256 in b.log()


def test_a_sync_killed_mid_page_resumes_without_loss_or_duplicates(nodes, peered):
    a, b, _ = nodes
    sync(b, a)
    before = b.mirrored_papers(a)
    a.python(
        "from apps.accounts.models import Institution, User\n"
        "from apps.catalog import services\n"
        "user = User.objects.get(username='alpha-author')\n"
        "institution = Institution.objects.get(slug='alpha-uni')\n"
        "for n in range(400):\n"
        "    services.paper_create(user=user, institution=institution, title=f'gamma {n}')\n"
    )
    code = (
        "from apps.federation.models import Peer\n"
        "from apps.federation.services import peer_sync_now\n"
        f"peer_sync_now(peer_id=Peer.objects.get(node_id='{a.url}').pk)\n"
    )
    log = (b.folder / "killed-sync.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=REPO, env={**b.env, "FEDERATION_FEED_PAGE_SIZE": "1"},
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and b.mirrored_papers(a) < before + 20:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = b.mirrored_papers(a)
    assert before < partial < before + 400, (b.folder / "killed-sync.log").read_text()

    sync(b, a)

    titles = mirrored_titles(b, a)
    assert len(titles) == len(set(titles)) == before + 400


def test_a_stranger_is_refused_and_a_suspended_peer_cannot_sync(nodes, peered):
    a, b, c = nodes
    stranger = c.python(
        "import requests\n"
        "from apps.federation.signatures import sign_outbound\n"
        f"prepared = requests.Request('GET', '{a.url}/federation/v1/feed').prepare()\n"
        "sign_outbound(prepared)\n"
        "response = requests.Session().send(prepared, timeout=30)\n"
        "print(response.status_code, response.json()['error']['code'])\n"
    ).split()
    assert stranger == ["401", "unknown_key"] or stranger == ["403", "peer_not_approved"]

    a.json("POST", f"federation/peers/{peer_id(a, b)}/suspend/", json={"note": "maintenance"})
    try:
        on_b = b.json("GET", f"federation/peers/{peer_id(b, a)}/")
        assert on_b["state"] == "suspended" and on_b["suspended_by_peer"] is True
        response = b.api("POST", f"federation/peers/{peer_id(b, a)}/sync/")
        assert response.status_code == 400
        refused = b.api("POST", f"federation/peers/{peer_id(b, a)}/reinstate/", json={})
        assert refused.status_code == 400
    finally:
        a.json("POST", f"federation/peers/{peer_id(a, b)}/reinstate/", json={})
    assert b.json("GET", f"federation/peers/{peer_id(b, a)}/")["state"] == "approved"


def test_after_a_key_rotation_the_peer_learns_the_new_key_once_and_keeps_syncing(nodes, peered):
    a, b, _ = nodes
    old = a.json("GET", "federation/keys/")
    new = a.json("POST", "federation/keys/", expect=201)

    published = requests.get(f"{a.url}/.well-known/research-exchange", timeout=10).json()
    statuses = {key["key_id"]: key["status"] for key in published["keys"]}
    assert statuses[new["key_id"]] == "active"
    assert statuses[old[0]["key_id"]] == "retiring"

    report = sync(b, a)

    assert report["rejected"] == 0
    pinned = b.json("GET", f"federation/peers/{peer_id(b, a)}/")
    assert pinned["state"] == "approved"
    assert pinned["last_error"] == ""
