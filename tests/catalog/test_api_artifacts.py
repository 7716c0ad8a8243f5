"""Uploading and downloading content-addressed artifact files through the API."""

import base64

import pytest

from apps.catalog import services
from apps.catalog.models import Artifact, Visibility
from apps.catalog.uploads import uploaded_file_from_bytes
from tests.catalog.conftest import sha256_of, stored_files, upload
from tests.catalog.samples import pickle_bytes, safetensors_bytes

pytestmark = pytest.mark.django_db


def test_upload_stores_the_file_once_by_its_sha256(client_as, artifact_dir):
    client = client_as("member")
    content = safetensors_bytes()

    first = upload(client, content, "model.safetensors", sha256=sha256_of(content))
    again = upload(client, content, "copy.safetensors")

    assert first.status_code == 201, first.json()
    assert first.json()["sha256"] == sha256_of(content)
    assert first.json()["format"] == "safetensors"
    assert first.json()["format_info"]["tensor_count"] == 1
    assert first.json()["size"] == len(content)
    assert again.status_code == 200
    assert Artifact.objects.count() == 1
    assert stored_files(artifact_dir) == [sha256_of(content)]


def test_digest_mismatch_is_refused_and_nothing_is_kept(client_as, artifact_dir):
    content = safetensors_bytes()
    response = upload(client_as("member"), content, "model.safetensors", sha256="0" * 64)

    assert response.status_code == 400
    assert response.json()["error"]["fields"]["sha256"][0].startswith(
        f"The uploaded file's sha256 is {sha256_of(content)}"
    )
    assert Artifact.objects.count() == 0
    assert stored_files(artifact_dir) == []


def test_truncated_file_is_refused_with_the_reason(client_as, artifact_dir):
    content = safetensors_bytes()[:-5]
    response = upload(client_as("member"), content, "model.safetensors")

    assert response.status_code == 400
    assert "model.safetensors" in response.json()["error"]["fields"]["file"][0]
    assert Artifact.objects.count() == 0
    assert stored_files(artifact_dir) == []


def test_oversized_upload_answers_413_and_keeps_nothing(client_as, artifact_dir, settings):
    settings.ARTIFACT_MAX_BYTES = 1000
    response = upload(client_as("member"), b"x" * 5000, "notes.txt")

    assert response.status_code == 413
    assert "limit" in response.json()["error"]["message"]
    assert Artifact.objects.count() == 0
    assert stored_files(artifact_dir) == []


def test_empty_file_is_refused(client_as):
    response = upload(client_as("member"), b"", "empty.onnx")
    assert response.status_code == 400
    assert "file" in response.json()["error"]["fields"]


def test_pickle_files_are_kept_but_flagged_unsafe(client_as):
    response = upload(client_as("member"), pickle_bytes(), "model.pt")

    assert response.status_code == 201
    assert (response.json()["format"], response.json()["unsafe"]) == ("pickle", True)


def test_anonymous_callers_cannot_upload(client_as):
    response = upload(client_as("anonymous"), safetensors_bytes(), "model.safetensors")
    assert response.status_code == 401


@pytest.fixture
def published_file(member, institution, publish_model):
    """Returns a function that publishes one file in a model of the given visibility."""

    def _published(visibility: str, content: bytes | None = None) -> tuple[Artifact, bytes]:
        content = content or safetensors_bytes(256)
        model = publish_model(member, institution, visibility=visibility)
        file = uploaded_file_from_bytes(content, "weights.safetensors")
        artifact = services.artifact_store(user=member, upload=file)
        services.version_create(
            user=member,
            model=model,
            label="1.0",
            files=[("weights.safetensors", artifact.sha256)],
            publish=True,
        )
        return artifact, content

    return _published


def test_download_sends_length_etag_and_digest(api_client, published_file):
    artifact, content = published_file(Visibility.PUBLIC)

    response = api_client.get(f"/api/v1/artifacts/{artifact.sha256}/download")

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == content
    assert response["Content-Length"] == str(len(content))
    assert response["ETag"] == f'"{artifact.sha256}"'
    digest = base64.b64encode(bytes.fromhex(artifact.sha256)).decode()
    assert response["Digest"] == f"sha-256={digest}"


@pytest.mark.parametrize(
    ("range_header", "first", "last"),
    [("bytes=0-9", 0, 9), ("bytes=100-", 100, None), ("bytes=-16", -16, None)],
)
def test_range_requests_return_the_asked_bytes(
    api_client, published_file, range_header, first, last
):
    artifact, content = published_file(Visibility.PUBLIC)
    expected = content[first : (last + 1 if last is not None else None)]

    response = api_client.get(
        f"/api/v1/artifacts/{artifact.sha256}/download", HTTP_RANGE=range_header
    )

    assert response.status_code == 206
    assert b"".join(response.streaming_content) == expected
    assert response["Content-Length"] == str(len(expected))
    assert response["Content-Range"].endswith(f"/{len(content)}")


def test_unsatisfiable_range_answers_416(api_client, published_file):
    artifact, content = published_file(Visibility.PUBLIC)
    response = api_client.get(
        f"/api/v1/artifacts/{artifact.sha256}/download", HTTP_RANGE=f"bytes={len(content)}-"
    )
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{len(content)}"


def test_matching_etag_answers_304(api_client, published_file):
    artifact, _content = published_file(Visibility.PUBLIC)
    response = api_client.get(
        f"/api/v1/artifacts/{artifact.sha256}/download", HTTP_IF_NONE_MATCH=f'"{artifact.sha256}"'
    )
    assert response.status_code == 304


@pytest.mark.parametrize(
    ("visibility", "readers"),
    [
        (Visibility.PUBLIC, {"anonymous", "outsider", "member", "institution_admin", "staff"}),
        (Visibility.INSTITUTION, {"member", "institution_admin", "staff"}),
        (Visibility.PRIVATE, {"member", "institution_admin", "staff"}),
    ],
)
def test_downloads_follow_the_visibility_of_the_record(
    client_as, actors, published_file, visibility, readers
):
    artifact, _content = published_file(visibility)
    for actor in actors:
        client = client_as(actor)
        download = client.get(f"/api/v1/artifacts/{artifact.sha256}/download")
        metadata = client.get(f"/api/v1/artifacts/{artifact.sha256}/")
        expected = 200 if actor in readers else 404
        assert (actor, download.status_code, metadata.status_code) == (actor, expected, expected)
        client.logout()
        client.force_authenticate(None)


def test_an_unattached_upload_is_readable_by_its_uploader_only(client_as):
    content = safetensors_bytes()
    sha256 = upload(client_as("member"), content, "w.safetensors").json()["sha256"]

    assert client_as("member").get(f"/api/v1/artifacts/{sha256}/").status_code == 200
    client_as("member").force_authenticate(None)
    assert client_as("outsider").get(f"/api/v1/artifacts/{sha256}/").status_code == 404


def test_a_download_can_carry_the_records_file_name(api_client, published_file):
    artifact, _content = published_file(Visibility.PUBLIC)
    response = api_client.get(
        f"/api/v1/artifacts/{artifact.sha256}/download?filename=weights.safetensors"
    )
    assert response["Content-Disposition"] == 'attachment; filename="weights.safetensors"'


def test_knowing_a_digest_does_not_let_anyone_attach_a_private_file(
    client_as, published_file, other_institution, outsider
):
    artifact, _content = published_file(Visibility.PRIVATE)
    dataset = client_as("outsider").post(
        "/api/v1/datasets/",
        {
            "institution": other_institution.slug, "name": "Copy", "slug": "copy",
            "license": "MIT", "files": [{"filename": "stolen.bin", "sha256": artifact.sha256}],
        },
        format="json",
    )  # fmt: skip
    paper = client_as("outsider").post(
        "/api/v1/papers/",
        {"institution": other_institution.slug, "title": "Copy", "pdf": artifact.sha256},
        format="json",
    )

    assert dataset.status_code == 400
    assert "that you can read" in dataset.json()["error"]["message"]
    assert paper.status_code == 400
    assert "that you can read" in paper.json()["error"]["fields"]["pdf"][0]
