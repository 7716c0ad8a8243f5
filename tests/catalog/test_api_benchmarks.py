"""Datasets and benchmarks through the API."""

import pytest
from rest_framework.test import APIClient

from apps.catalog import services
from apps.catalog.models import Benchmark, Dataset, Visibility
from tests.catalog.conftest import store
from tests.catalog.samples import safetensors_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def dataset(member, institution):
    data = store(member, safetensors_bytes(), "digits.safetensors")
    return services.dataset_create(
        user=member, institution=institution, name="Digits", slug="digits",
        license="BSD-3-Clause", files=[("digits.safetensors", data.sha256)],
    )  # fmt: skip


def benchmark_payload(source, **fields) -> dict:
    return {
        "institution": "northbridge",
        "name": "Digits accuracy",
        "slug": "digits-accuracy",
        "task_type": "classification",
        "dataset": source.pk,
        "metrics": [
            {"name": "accuracy", "higher_is_better": True},
            {"name": "log_loss", "higher_is_better": False},
        ],
        "evaluator": "onnx",
        "evaluator_config": {"task": "classification", "data_file": "digits.npz", "top_k": [1, 3]},
        "gpu_count": 1,
        "gpu_memory_gb": 16,
        "time_limit_minutes": 30,
        **fields,
    }


def test_a_dataset_lists_its_files(client_as, member):
    data = store(member, safetensors_bytes(), "x.safetensors")
    response = client_as("member").post(
        "/api/v1/datasets/",
        {
            "institution": "northbridge", "name": "Wine", "slug": "wine", "license": "cc-by-4.0",
            "files": [{"filename": "wine.safetensors", "sha256": data.sha256}],
        },
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.json()
    assert response.json()["license"] == "CC-BY-4.0"
    assert response.json()["files"][0]["filename"] == "wine.safetensors"


def test_a_benchmark_records_metrics_evaluator_and_resources(client_as, dataset):
    response = client_as("member").post(
        "/api/v1/benchmarks/", benchmark_payload(dataset), format="json"
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["metrics"][1] == {"name": "log_loss", "higher_is_better": False}
    assert (body["gpu_count"], body["gpu_memory_gb"], body["time_limit_minutes"]) == (1, 16, 30)
    assert body["dataset"]["name"] == "Digits"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"evaluator": "magic"}, "Unknown evaluator 'magic'"),
        ({"evaluator_config": {"task": "ranking", "data_file": "d.npz"}}, "task: 'ranking'"),
        ({"evaluator_config": {"task": "classification"}}, "'data_file' is a required property"),
        (
            {"evaluator_config": {"task": "regression", "data_file": "d", "colour": "blue"}},
            "Additional properties are not allowed",
        ),
        ({"metrics": []}, "metrics"),
        ({"metrics": [{"name": "acc"}]}, "higher_is_better"),
        (
            {"metrics": [{"name": "acc", "higher_is_better": True}] * 2},
            "Metric names must be unique",
        ),
        ({"gpu_count": -1}, "gpu_count"),
        ({"dataset": 999999}, "dataset"),
    ],
)
def test_bad_benchmarks_are_refused_with_the_reason(client_as, dataset, fields, message):
    response = client_as("member").post(
        "/api/v1/benchmarks/", benchmark_payload(dataset, **fields), format="json"
    )
    assert response.status_code == 400
    assert message in str(response.json()["error"])
    assert Benchmark.objects.count() == 0


def test_a_benchmark_needs_a_dataset_its_author_can_see(client_as, other_institution, outsider):
    hidden = services.dataset_create(
        user=outsider, institution=other_institution, name="Hidden", slug="hidden",
        license="MIT", visibility=Visibility.PRIVATE,
    )  # fmt: skip
    response = client_as("member").post(
        "/api/v1/benchmarks/", benchmark_payload(hidden), format="json"
    )
    assert response.status_code == 400
    assert "dataset" in response.json()["error"]["fields"]


def test_the_evaluators_and_their_config_schemas_are_published(api_client):
    evaluators = {e["name"]: e for e in api_client.get("/api/v1/evaluators/").json()}
    assert {"onnx", "embedding-similarity", "lm-eval", "command"} <= set(evaluators)
    assert evaluators["lm-eval"]["model_formats"] == ["safetensors"]
    assert "tasks" in evaluators["lm-eval"]["config_schema"]["required"]


def test_editing_a_benchmark_revalidates_its_config(client_as, dataset, member, institution):
    benchmark = services.benchmark_create(
        user=member,
        **{**benchmark_payload(dataset), "institution": institution, "dataset": dataset},
    )
    response = client_as("member").patch(
        f"/api/v1/benchmarks/{benchmark.pk}/",
        {"evaluator": "lm-eval"},
        format="json",
    )
    assert response.status_code == 400
    assert "'tasks' is a required property" in str(response.json()["error"])
    benchmark.refresh_from_db()
    assert benchmark.evaluator == "onnx"


@pytest.mark.parametrize("kind", ["datasets", "benchmarks"])
def test_private_datasets_and_benchmarks_stay_private(
    kind, client_as, dataset, member, institution
):
    services.dataset_update(user=member, dataset=dataset, visibility=Visibility.PRIVATE)
    benchmark = services.benchmark_create(
        user=member,
        **{**benchmark_payload(dataset), "institution": institution, "dataset": dataset},
        visibility=Visibility.PRIVATE,
    )
    record_id = dataset.pk if kind == "datasets" else benchmark.pk
    assert client_as("outsider").get(f"/api/v1/{kind}/{record_id}/").status_code == 404
    assert client_as("outsider").get(f"/api/v1/{kind}/").json()["count"] == 0
    client_as("outsider").force_authenticate(None)
    assert client_as("member").get(f"/api/v1/{kind}/{record_id}/").status_code == 200
    assert Dataset.objects.count() == 1


@pytest.fixture
def public_benchmark_on_hidden_dataset(client_as, dataset):
    services.dataset_update(
        user=dataset.created_by, dataset=dataset, visibility=Visibility.INSTITUTION
    )
    response = client_as("member").post(
        "/api/v1/benchmarks/", benchmark_payload(dataset), format="json"
    )
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_hidden_dataset_shows_as_hidden_with_nothing_of_its_name(
    client_as, public_benchmark_on_hidden_dataset, dataset
):
    benchmark_id = public_benchmark_on_hidden_dataset["id"]
    anonymous = APIClient()
    for answer in (
        anonymous.get(f"/api/v1/benchmarks/{benchmark_id}/").json(),
        anonymous.get("/api/v1/benchmarks/").json()["results"][0],
        client_as("outsider").get(f"/api/v1/benchmarks/{benchmark_id}/").json(),
    ):
        assert answer["dataset"] == {"id": None, "name": None, "hidden": True}

    member_view = client_as("member").get(f"/api/v1/benchmarks/{benchmark_id}/").json()
    assert member_view["dataset"] == {"id": dataset.pk, "name": "Digits", "hidden": False}


def test_a_hidden_dataset_id_answers_like_a_missing_one(client_as, dataset):
    services.dataset_update(user=dataset.created_by, dataset=dataset, visibility="private")
    missing_id = dataset.pk + 1000
    outsider = client_as("outsider")
    hidden = outsider.get(f"/api/v1/benchmarks/?dataset={dataset.pk}")
    missing = outsider.get(f"/api/v1/benchmarks/?dataset={missing_id}")
    assert hidden.status_code == missing.status_code == 200
    assert hidden.json() == missing.json()

    def create_on(dataset_id: int) -> dict:
        body = benchmark_payload(dataset, institution="rheinau", dataset=dataset_id)
        return outsider.post("/api/v1/benchmarks/", body, format="json").json()["error"]

    assert create_on(dataset.pk)["fields"] == create_on(missing_id)["fields"]
