"""Published model versions through the real Hugging Face clients (huggingface_hub and
transformers) against a live server: downloads byte for byte, model info, versions as
revisions, loading and generating with transformers and again offline from its cache, the
client's own exception types, visibility with HF_TOKEN, ranges, and a mirrored model whose
file is fetched from its origin node on first download."""

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from django.test import Client
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from apps.catalog import hub, mirrors
from apps.catalog import services as catalog_services
from apps.catalog.models import Artifact, ModelVersion, ResearchModel, Visibility
from apps.catalog.uploads import uploaded_file_from_bytes
from apps.evaluations.samples.tiny_lm import build_tiny_lm
from apps.federation import keys
from apps.federation.models import FeedSequencer
from tests.conftest import REPO
from tests.factories import api_token_for
from tests.federation.signing_helpers import make_peer, peer_server

pytestmark = pytest.mark.usefixtures("transactional_db")


@pytest.fixture(scope="module")
def tiny_lms(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """The tiny GPT-2 twice (random weights of seeds 0 and 1, the same tokenizer), built once
    for the module: {label: {filename: bytes}}, and the folders they were built in."""
    built = {}
    for label, seed in (("1.0", 0), ("2.0", 1)):
        folder = tmp_path_factory.mktemp(f"tiny-lm-{seed}")
        built[label] = {path.name: path.read_bytes() for path in build_tiny_lm(folder, seed=seed)}
    return built


@dataclass
class Node:
    url: str
    repo_id: str
    model: ResearchModel
    versions: dict[str, ModelVersion]
    files: dict[str, dict[str, bytes]]

    def commit(self, label: str) -> str:
        return commit_of(self.model, self.versions[label])


def commit_of(model: ResearchModel, version: ModelVersion) -> str:
    files = version.files.values_list("filename", "artifact__sha256")
    return hub.version_commit(model, version.label, list(files))


def publish(user, institution, slug: str, versions: dict[str, dict[str, bytes]], **fields):
    model = catalog_services.model_create(
        user=user, institution=institution, name=slug.replace("-", " ").title(), slug=slug,
        license="MIT", task="text-generation", tags=["demo", "gpt2"], **fields,
    )  # fmt: skip
    published = {}
    for label, files in versions.items():
        stored = []
        for name, content in files.items():
            upload = uploaded_file_from_bytes(content, name)
            stored.append((name, catalog_services.artifact_store(user=user, upload=upload).sha256))
        published[label] = catalog_services.version_create(
            user=user, model=model, label=label, files=stored, publish=True
        )
    return model, published


@pytest.fixture
def node(live_server, artifact_dir, settings, member, institution, tiny_lms) -> Node:
    settings.FEDERATION_NODE_URL = live_server.url
    # A transactional test empties every table afterwards, the row a migration made included;
    # writes sequence the change feed on commit, which needs it.
    FeedSequencer.objects.get_or_create(pk=1)
    model, versions = publish(member, institution, "tiny-gpt2", tiny_lms)
    # A draft is never served, not even its label.
    readme = catalog_services.artifact_store(
        user=member, upload=uploaded_file_from_bytes(b"# Next\n", "README.md")
    )
    files = [("README.md", readme.sha256)]
    files += [(file.filename, file.artifact.sha256) for file in versions["2.0"].files.all()]
    catalog_services.version_create(user=member, model=model, label="3.0-draft", files=files)
    return Node(live_server.url, f"{institution.slug}/tiny-gpt2", model, versions, tiny_lms)


@pytest.fixture(autouse=True)
def no_stored_token(monkeypatch, tmp_path):
    """Anonymous unless a test sends a token: no HF_TOKEN, no token file of the machine's."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-token"))


def sha256_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def test_snapshot_download_of_main_gets_the_latest_published_version_byte_for_byte(node, tmp_path):
    folder = Path(snapshot_download(node.repo_id, endpoint=node.url, cache_dir=tmp_path / "hf"))

    assert folder.name == node.commit("2.0")
    downloaded = {path.name: path.read_bytes() for path in folder.iterdir()}
    assert downloaded.keys() == node.files["2.0"].keys()  # never the draft's README.md
    for name, content in node.files["2.0"].items():
        assert sha256_of(downloaded[name]) == sha256_of(content), name


def test_model_info_describes_the_latest_version_from_the_catalogue(node):
    api = HfApi(endpoint=node.url)

    info = api.model_info(node.repo_id)

    version = node.versions["2.0"]
    assert info.id == node.repo_id
    assert info.sha == node.commit("2.0") and len(info.sha) == 40
    assert info.private is False and info.gated is False
    # The Hub's dates are to the millisecond.
    assert info.last_modified == version.published_at.replace(
        microsecond=version.published_at.microsecond // 1000 * 1000
    )
    assert info.library_name == "transformers" and info.pipeline_tag == "text-generation"
    assert {"demo", "gpt2", "license:mit", "transformers"} <= set(info.tags)
    assert info.card_data.license == "mit"
    siblings = {sibling.rfilename: sibling for sibling in info.siblings}
    assert siblings.keys() == node.files["2.0"].keys()
    weights = siblings["model.safetensors"]
    assert weights.lfs.sha256 == sha256_of(node.files["2.0"]["model.safetensors"])
    assert weights.size == len(node.files["2.0"]["model.safetensors"])
    assert api.list_repo_files(node.repo_id) == sorted(node.files["2.0"])
    (config,) = [
        entry
        for entry in api.list_repo_tree(node.repo_id, expand=True)
        if entry.path == "config.json"
    ]
    assert config.lfs.sha256 == sha256_of(node.files["2.0"]["config.json"])
    assert config.last_commit.oid == node.commit("2.0")


def test_a_version_label_and_its_commit_id_are_revisions(node, tmp_path):
    api = HfApi(endpoint=node.url)
    first = node.commit("1.0")
    assert first != node.commit("2.0")

    assert api.model_info(node.repo_id, revision="1.0").sha == first
    assert api.model_info(node.repo_id, revision=first).sha == first
    assert api.model_info(node.repo_id, revision="main").sha == node.commit("2.0")
    for revision in ("1.0", first):
        path = hf_hub_download(
            node.repo_id, "model.safetensors", revision=revision, endpoint=node.url,
            cache_dir=tmp_path / "hf",
        )  # fmt: skip
        assert Path(path).read_bytes() == node.files["1.0"]["model.safetensors"]
        assert Path(path).parent.name == first
    folder = snapshot_download(
        node.repo_id, revision="1.0", endpoint=node.url, cache_dir=tmp_path / "hf"
    )
    assert Path(folder).name == first
    assert api.list_repo_files(node.repo_id, revision=first) == sorted(node.files["1.0"])


LOAD = """
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

repo, revision, built = sys.argv[1:4]
tokenizer = AutoTokenizer.from_pretrained(repo, revision=revision)
model = AutoModelForCausalLM.from_pretrained(repo, revision=revision)
inputs = tokenizer("The sun rises in the", return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs).logits
    reference = AutoModelForCausalLM.from_pretrained(built)(**inputs).logits
generated = model.generate(**inputs, max_new_tokens=4, do_sample=False, pad_token_id=0)
generate = pipeline("text-generation", repo, revision=revision)
text = generate("The sun", max_new_tokens=2, do_sample=False)[0]["generated_text"]
print(json.dumps({
    "pipeline_text": text,
    "same_logits": bool(torch.equal(logits, reference)),
    "generated": generated[0].tolist(),
    "prompt": inputs["input_ids"][0].tolist(),
}))
"""


def load_with_transformers(env: dict[str, str], repo_id: str, built: Path) -> dict:
    """from_pretrained in a process of its own, configured as a user's shell would be."""
    process = subprocess.run(
        [sys.executable, "-c", LOAD, repo_id, "main", str(built)],
        env={**os.environ, **env}, cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


def test_transformers_loads_and_generates_then_reloads_offline_from_its_cache(node, tmp_path):
    built = tmp_path / "built"
    built.mkdir()
    for name, content in node.files["2.0"].items():
        (built / name).write_bytes(content)
    env = {
        "HF_ENDPOINT": node.url,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_TOKEN": "",
        "TRANSFORMERS_VERBOSITY": "error",
    }

    online = load_with_transformers(env, node.repo_id, built)
    # Offline, the node is not even named: everything comes from the cache.
    offline_env = {**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    offline = load_with_transformers(offline_env, node.repo_id, built)

    assert online["same_logits"] and offline["same_logits"]
    assert len(online["generated"]) == len(online["prompt"]) + 4
    assert offline["generated"] == online["generated"]
    assert online["pipeline_text"].startswith("The sun")


def test_what_is_missing_raises_the_clients_own_errors(node, tmp_path):
    api = HfApi(endpoint=node.url)
    cache = tmp_path / "hf"

    with pytest.raises(RepositoryNotFoundError):
        api.model_info(f"{node.repo_id}-nope")
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download(f"{node.repo_id}-nope", endpoint=node.url, cache_dir=cache)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("nowhere/tiny-gpt2", "config.json", endpoint=node.url, cache_dir=cache)
    for label in ("9.9", "3.0-draft", "0" * 40):
        with pytest.raises(RevisionNotFoundError):
            api.model_info(node.repo_id, revision=label)
        with pytest.raises(RevisionNotFoundError):
            hf_hub_download(
                node.repo_id, "config.json", revision=label, endpoint=node.url, cache_dir=cache
            )
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(node.repo_id, revision="3.0-draft", endpoint=node.url, cache_dir=cache)
    with pytest.raises(RemoteEntryNotFoundError) as missing:
        hf_hub_download(node.repo_id, "README.md", endpoint=node.url, cache_dir=cache)
    assert isinstance(missing.value, EntryNotFoundError)
    # The 404 named the commit, so the client remembers the file is missing there.
    assert missing.value.response.headers["X-Repo-Commit"] == node.commit("2.0")
    assert list(cache.rglob(f".no_exist/{node.commit('2.0')}/README.md"))
    # The client's daily question for its agent registry is not for a node: a plain 404.
    assert requests.get(f"{node.url}/api/agent-harnesses", timeout=10).status_code == 404


def test_a_hidden_model_is_a_missing_repository_but_downloads_with_a_members_token(
    node, member, outsider, institution, tmp_path, monkeypatch
):
    secret_files = {"config.json": node.files["1.0"]["config.json"]}
    private, _ = publish(
        member, institution, "private-gpt2", {"1.0": secret_files}, visibility=Visibility.PRIVATE
    )
    internal, _ = publish(
        member, institution, "internal-gpt2", {"1.0": secret_files},
        visibility=Visibility.INSTITUTION,
    )  # fmt: skip
    outsiders = api_token_for(outsider)
    members = api_token_for(member)
    cache = tmp_path / "hf"

    for model in (private, internal):
        repo_id = f"{institution.slug}/{model.slug}"
        for token in (False, outsiders):
            with pytest.raises(RepositoryNotFoundError):
                HfApi(endpoint=node.url, token=token).model_info(repo_id)
            with pytest.raises(RepositoryNotFoundError):
                hf_hub_download(
                    repo_id, "config.json", endpoint=node.url, cache_dir=cache, token=token
                )
        info = HfApi(endpoint=node.url, token=members).model_info(repo_id)
        assert info.private is True and info.id == repo_id
        # No shared cache keeps what only the token's holder may read.
        for path in (f"api/models/{repo_id}", f"api/models/{repo_id}/tree/main"):
            answer = requests.get(
                f"{node.url}/{path}", headers={"Authorization": f"Bearer {members}"}, timeout=10
            )
            assert answer.status_code == 200
            assert "private" in answer.headers["Cache-Control"]
            assert "Authorization" in answer.headers["Vary"]
        # HF_TOKEN, as a user sets it in the shell.
        monkeypatch.setenv("HF_TOKEN", members)
        folder = snapshot_download(repo_id, endpoint=node.url, cache_dir=cache)
        monkeypatch.delenv("HF_TOKEN")
        assert (Path(folder) / "config.json").read_bytes() == secret_files["config.json"]
        # A browser signed in to the portal reads it too.
        browser = Client()
        browser.force_login(member)
        signed_in = {"sessionid": browser.cookies["sessionid"].value}
        url = f"{node.url}/{repo_id}/resolve/main/config.json"
        assert (
            requests.get(url, cookies=signed_in, timeout=10).content == secret_files["config.json"]
        )
        assert requests.get(url, timeout=10).headers["X-Error-Code"] == "RepoNotFound"


def test_a_bad_token_is_refused_with_a_clear_401(node, tmp_path):
    with pytest.raises(HfHubHTTPError) as refused:
        HfApi(endpoint=node.url, token="rx_not-a-token").model_info(node.repo_id)
    assert not isinstance(refused.value, RepositoryNotFoundError)
    assert refused.value.response.status_code == 401
    assert "Invalid API token" in str(refused.value)
    # A download asks with HEAD first: no body, the Hub's own words for a bad token.
    with pytest.raises(HfHubHTTPError, match="Invalid credentials in Authorization header"):
        hf_hub_download(
            node.repo_id, "config.json", endpoint=node.url, cache_dir=tmp_path, token="rx_nope"
        )


def test_a_file_answers_the_clients_headers_ranges_and_revalidation(node):
    weights = node.files["2.0"]["model.safetensors"]
    url = f"{node.url}/{node.repo_id}/resolve/main/model.safetensors"

    head = requests.head(url, timeout=10)
    ranged = requests.get(url, headers={"Range": "bytes=100-163"}, timeout=10)
    tail = requests.get(url, headers={"Range": "bytes=-10"}, timeout=10)
    revalidated = requests.get(url, headers={"If-None-Match": head.headers["ETag"]}, timeout=10)

    assert head.status_code == 200
    assert head.headers["X-Repo-Commit"] == node.commit("2.0")
    assert head.headers["X-Linked-Etag"] == f'"{sha256_of(weights)}"'
    assert head.headers["X-Linked-Size"] == head.headers["Content-Length"] == str(len(weights))
    assert ranged.status_code == 206 and ranged.content == weights[100:164]
    assert ranged.headers["Content-Range"] == f"bytes 100-163/{len(weights)}"
    assert tail.status_code == 206 and tail.content == weights[-10:]
    assert revalidated.status_code == 304


def test_tree_pages_are_followed_through_the_link_header(node, monkeypatch):
    monkeypatch.setattr(hub, "TREE_PAGE_SIZE", 2)
    first = requests.get(
        f"{node.url}/api/models/{node.repo_id}/tree/main", params={"recursive": "true"}, timeout=10
    )
    assert len(first.json()) == 2 and first.links["next"]["url"].startswith(node.url)

    assert HfApi(endpoint=node.url).list_repo_files(node.repo_id) == sorted(node.files["2.0"])


def test_a_mirrored_model_is_served_and_its_files_fetched_from_the_origin_first(
    node, settings, tmp_path
):
    settings.FEDERATION_RETRIES = 0
    keys.node_key_ensure()
    later = b'{"max_new_tokens": 4}'
    with peer_server() as origin:
        make_peer(origin.url, origin.key)
        # The origin serves the file's bytes; its feed gave their sha256 and size.
        origin.payload = {"model_type": "gpt2", "n_layer": 2}
        content = json.dumps(origin.payload).encode()
        files = [
            mirrors.MirroredFile(
                filename=name, sha256=sha256_of(data), size=len(data), format="json",
                unsafe=False, url=f"{origin.url}/api/v1/artifacts/{sha256_of(data)}/download",
            )
            for name, data in (("config.json", content), ("generation_config.json", later))
        ]  # fmt: skip
        synced_at = node.model.created_at
        mirrors.institution_mirror(
            origin=mirrors.Origin(node=origin.url, id="3", url=origin.url, synced_at=synced_at),
            fields={"name": "Lakeshore NLP", "slug": "lakeshore", "country": "CA"},
        )
        mirrored = mirrors.model_mirror(
            origin=mirrors.Origin(
                node=origin.url, id="7", url=f"{origin.url}/models/7", synced_at=synced_at
            ),
            institution="3",
            fields={"name": "Peer GPT-2", "slug": "peer-gpt2", "license": "MIT", "task": ""},
            tags=["peer"], papers=[], benchmarks=[],
            versions=[mirrors.MirroredVersion("1.0", "", synced_at, files)],
        )  # fmt: skip
        repo_id = f"{mirrored.institution.slug}/peer-gpt2"
        assert not Artifact.objects.get(sha256=sha256_of(content)).is_stored

        path = hf_hub_download(repo_id, "config.json", endpoint=node.url, cache_dir=tmp_path)

        assert Path(path).read_bytes() == content
        assert Artifact.objects.get(sha256=sha256_of(content)).is_stored
        (fetch,) = origin.requests_to(f"/api/v1/artifacts/{sha256_of(content)}/download")
        assert "Signature" in fetch.headers
        origin_url = origin.url
    # The commit id stands on the version's identity at its origin: the same at every node.
    identity = [
        "research-exchange model version 1", f"model {origin_url} 7", "version 1.0",
        f"file {sha256_of(content)} config.json", f"file {sha256_of(later)} generation_config.json",
    ]  # fmt: skip
    info = HfApi(endpoint=node.url).model_info(repo_id)
    assert info.sha == hashlib.sha1("\n".join(identity).encode()).hexdigest()  # noqa: S324
    # The origin is gone: a file not fetched yet says so, and nothing is stored.
    unavailable = requests.get(
        f"{node.url}/{repo_id}/resolve/main/generation_config.json", timeout=30
    )
    assert unavailable.status_code == 424
    assert unavailable.headers["X-Error-Code"] == "OriginUnavailable"
    assert "could not connect" in unavailable.json()["error"]
    assert not Artifact.objects.get(sha256=sha256_of(later)).is_stored


def test_anonymous_reads_are_throttled_like_the_rest_api(node, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "2/minute", "user": "100/minute"},
    }
    url = f"{node.url}/api/models/{node.repo_id}"

    answers = [requests.get(url, timeout=10) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert int(answers[2].headers["Retry-After"]) > 0
    assert "Too many requests" in answers[2].json()["error"]


def test_reads_take_a_fixed_number_of_queries_whatever_the_files_and_versions(
    node, member, django_assert_max_num_queries
):
    client = Client()
    info = f"/api/models/{node.repo_id}"
    tree = f"/api/models/{node.repo_id}/tree/{node.commit('1.0')}"
    resolve = f"/{node.repo_id}/resolve/1.0/config.json"

    # The request's transaction (BEGIN, COMMIT), the model, its tags, its published versions,
    # the chosen one's files; the info adds the linked papers, a commit id the versions' digests.
    with django_assert_max_num_queries(2 + 5):
        assert client.get(info).status_code == 200
    with django_assert_max_num_queries(2 + 5):
        assert client.get(tree).status_code == 200
    with django_assert_max_num_queries(2 + 4):
        assert client.head(resolve).status_code == 200
