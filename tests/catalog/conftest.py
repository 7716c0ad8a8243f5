import hashlib
import io

import pytest

from apps.catalog import services
from apps.catalog.models import Visibility
from apps.catalog.uploads import uploaded_file_from_bytes


@pytest.fixture(autouse=True)
def _artifacts_in_tmp(artifact_dir):
    """Every test here stores artifacts in a folder of its own."""


def stored_files(location) -> list[str]:
    return sorted(path.name for path in location.rglob("*") if path.is_file())


def sha256_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def store(user, content: bytes, name: str):
    """Stores an artifact through the service; returns it."""
    return services.artifact_store(user=user, upload=uploaded_file_from_bytes(content, name))


def upload(client, content: bytes, filename: str, **fields):
    """Posts a file to the artifact endpoint the way an integrator's script would."""
    file = io.BytesIO(content)
    file.name = filename
    return client.post("/api/v1/artifacts/", {"file": file, **fields}, format="multipart")


@pytest.fixture
def publish_model(db):
    """Creates a model through the service: publish_model(user, institution, visibility=...)."""
    counter = iter(range(1000))

    def _publish(user, institution, visibility=Visibility.PUBLIC, **fields):
        number = next(counter)
        values = {
            "name": f"Model {number}",
            "slug": f"model-{number}",
            "license": "MIT",
            "summary": "A test model.",
            **fields,
        }
        return services.model_create(
            user=user, institution=institution, visibility=visibility, **values
        )

    return _publish


@pytest.fixture
def catalog_rows(member, institution):
    """catalog_rows(n) adds n of each record type (tagged, with authors and files)."""
    from tests.catalog.samples import safetensors_bytes

    counter = iter(range(10_000))

    def _add(count: int) -> None:
        for _ in range(count):
            number = next(counter)
            data = store(member, safetensors_bytes(number + 1), "data.safetensors")
            dataset = services.dataset_create(
                user=member, institution=institution, name=f"Data {number}",
                slug=f"data-{number}", license="CC-BY-4.0", tags=["tabular"],
                files=[("data.safetensors", data.sha256)],
            )  # fmt: skip
            benchmark = services.benchmark_create(
                user=member, institution=institution, name=f"Bench {number}",
                slug=f"bench-{number}", task_type="classification", dataset=dataset,
                metrics=[{"name": "accuracy", "higher_is_better": True}], evaluator="onnx",
                evaluator_config={"task": "classification", "data_file": "data.npz"},
                tags=["vision"],
            )  # fmt: skip
            paper = services.paper_create(
                user=member, institution=institution, title=f"Paper {number}",
                authors=[services.AuthorInput(name="Ada Lovelace", institution=institution)],
                benchmark_ids=[benchmark.pk],
            )  # fmt: skip
            model = services.model_create(
                user=member, institution=institution, name=f"Model {number}",
                slug=f"row-model-{number}", license="MIT", tags=["vision", "nlp"],
                paper_ids=[paper.pk],
            )  # fmt: skip
            services.version_create(
                user=member, model=model, label="1.0", publish=True,
                files=[("w.safetensors", data.sha256)],
            )  # fmt: skip

    return _add
