import pytest

from apps.catalog.models import Visibility


@pytest.fixture
def results(
    member, institution, outsider, other_institution, cpu_benchmark, make_model_version, post_result
):
    public = make_model_version(member, institution, name="Open model")
    internal = make_model_version(
        member, institution, name="Internal model", visibility=Visibility.INSTITUTION
    )
    theirs = make_model_version(outsider, other_institution, name="Their model")
    return {
        "public": post_result(
            member,
            public,
            cpu_benchmark,
            {"accuracy": 0.9, "loss": 0.3},
            log="loading\nscored 540 rows\n",
        ),
        "internal": post_result(member, internal, cpu_benchmark, {"accuracy": 0.95, "loss": 0.2}),
        "theirs": post_result(member, theirs, cpu_benchmark, {"accuracy": 0.7, "loss": 0.1}),
    }


@pytest.mark.parametrize(
    ("actor", "expected"),
    [
        ("anonymous", {"public", "theirs"}),
        ("outsider", {"public", "theirs"}),
        ("member", {"public", "internal", "theirs"}),
        ("staff", {"public", "internal", "theirs"}),
    ],
)
def test_the_result_list_shows_what_each_caller_may_see(actor, expected, client_as, results):
    response = client_as(actor).get("/api/v1/results/")
    assert response.status_code == 200
    ids = {row["id"] for row in response.json()["results"]}
    assert ids == {results[name].pk for name in expected}
    for name, result in results.items():
        detail = client_as(actor).get(f"/api/v1/results/{result.pk}/")
        assert detail.status_code == (200 if name in expected else 404), name


def test_a_result_carries_its_model_benchmark_and_whole_provenance(
    api_client, results, cpu_benchmark, gpu_node
):
    result = results["public"]
    body = api_client.get(f"/api/v1/results/{result.pk}/").json()
    assert body["model"]["name"] == "Open model" and body["model"]["version"] == "1.0"
    assert body["benchmark"] == {
        "id": cpu_benchmark.pk,
        "name": cpu_benchmark.name,
        "institution": "northbridge",
    }
    assert body["metrics"] == {"accuracy": 0.9, "loss": 0.3}
    assert body["institution"] == "northbridge" and body["node"] == gpu_node.name
    provenance = body["provenance"]
    assert provenance["evaluator"] == "smoke" and provenance["evaluator_version"] == "0.1.0"
    assert provenance["model_files"] == {"model.safetensors": "ab" * 32}
    assert (provenance["seed"], provenance["batch_size"], provenance["gpus"]) == (0, 64, "cpu")
    assert provenance["node"] == gpu_node.name and provenance["job"] == result.job_id
    assert "gpu_seconds" in provenance and provenance["finished_at"]


def test_only_the_jobs_institution_gets_the_log_link(client_as, results):
    result = results["public"]
    member_view = client_as("member").get(f"/api/v1/results/{result.pk}/").json()
    assert member_view["logs"].endswith(f"/api/v1/jobs/{result.job_id}/logs/?attempt=1")
    log = client_as("member").get(member_view["logs"]).json()
    assert "scored 540 rows" in log["text"]


def test_a_public_result_shows_no_log_link_to_others(client_as, results):
    body = client_as("outsider").get(f"/api/v1/results/{results['public'].pk}/").json()
    assert body["logs"] is None


def test_results_filter_by_benchmark_model_and_institution(client_as, results, cpu_benchmark):
    client = client_as("member")
    theirs = results["theirs"]
    by_model = client.get(f"/api/v1/results/?model={theirs.model_version.model_id}").json()
    assert [row["id"] for row in by_model["results"]] == [theirs.pk]
    by_publisher = client.get("/api/v1/results/?model_institution=rheinau").json()
    assert [row["id"] for row in by_publisher["results"]] == [theirs.pk]
    by_benchmark = client.get(f"/api/v1/results/?benchmark={cpu_benchmark.pk}").json()
    assert by_benchmark["count"] == 3
    assert client.get("/api/v1/results/?benchmark=99999").json()["count"] == 0


def test_the_result_list_costs_the_same_queries_for_more_rows(
    client_as,
    results,
    member,
    cpu_benchmark,
    make_model_version,
    post_result,
    django_assert_max_num_queries,
):
    client = client_as("member")
    with django_assert_max_num_queries(4) as three_rows:
        client.get("/api/v1/results/")
    for number in range(3):
        version = make_model_version(member, results["public"].institution, name=f"More {number}")
        post_result(member, version, cpu_benchmark, {"accuracy": 0.5, "loss": 1})
    with django_assert_max_num_queries(len(three_rows.captured_queries)):
        assert client.get("/api/v1/results/").json()["count"] == 6


def test_the_leaderboard_ranks_by_the_chosen_metric(client_as, results, cpu_benchmark):
    client = client_as("member")
    url = f"/api/v1/benchmarks/{cpu_benchmark.pk}/leaderboard/"
    body = client.get(url).json()
    assert (body["metric"], body["higher_is_better"]) == ("accuracy", True)
    assert body["metrics"] == ["accuracy", "loss"]
    assert [(e["rank"], e["result"]["model"]["name"], e["score"]) for e in body["entries"]] == [
        (1, "Internal model", 0.95),
        (2, "Open model", 0.9),
        (3, "Their model", 0.7),
    ]
    by_loss = client.get(f"{url}?metric=loss").json()
    assert [e["result"]["model"]["name"] for e in by_loss["entries"]] == [
        "Their model",
        "Internal model",
        "Open model",
    ]
    only_theirs = client.get(f"{url}?institution=rheinau").json()
    assert [e["result"]["model"]["name"] for e in only_theirs["entries"]] == ["Their model"]


def test_the_leaderboard_hides_what_the_caller_may_not_see(client_as, results, cpu_benchmark):
    body = client_as("anonymous").get(f"/api/v1/benchmarks/{cpu_benchmark.pk}/leaderboard/").json()
    assert [e["result"]["model"]["name"] for e in body["entries"]] == ["Open model", "Their model"]


def test_leaderboard_bad_input_is_a_400_that_says_what_is_wrong(client_as, results, cpu_benchmark):
    client = client_as("member")
    url = f"/api/v1/benchmarks/{cpu_benchmark.pk}/leaderboard/"
    bad_metric = client.get(f"{url}?metric=bleu")
    assert bad_metric.status_code == 400
    assert "ranks by accuracy, loss" in str(bad_metric.json())
    bad_institution = client.get(f"{url}?institution=nowhere")
    assert bad_institution.status_code == 400
    assert bad_institution.json()["error"]["fields"] == {
        "institution": ["Object with slug=nowhere does not exist."]
    }


def test_a_hidden_benchmark_has_no_leaderboard(client_as, member, institution, make_cpu_benchmark):
    private = make_cpu_benchmark(member, institution, visibility=Visibility.PRIVATE)
    url = f"/api/v1/benchmarks/{private.pk}/leaderboard/"
    assert client_as("outsider").get(url).status_code == 404
    assert client_as("member").get(url).status_code == 200


def test_the_host_gpu_serials_mounts_and_hidden_dataset_files_stay_with_the_jobs_institution(
    client_as, member, institution, make_model_version, post_result
):
    from apps.catalog import services as catalog_services
    from tests.catalog.conftest import store
    from tests.catalog.samples import safetensors_bytes

    data = store(member, safetensors_bytes(901), "held-out.safetensors")
    dataset = catalog_services.dataset_create(
        user=member, institution=institution, name="Held out", slug="held-out",
        license="CC-BY-4.0", files=[("held-out.safetensors", data.sha256)],
        visibility=Visibility.INSTITUTION,
    )  # fmt: skip
    benchmark = catalog_services.benchmark_create(
        user=member, institution=institution, name="Hidden data", slug="hidden-data",
        task_type="classification", dataset=dataset,
        metrics=[{"name": "accuracy", "higher_is_better": True}], evaluator="smoke", gpu_count=0,
    )  # fmt: skip
    version = make_model_version(member, institution, name="Open model")
    result = post_result(
        member, version, benchmark, {"accuracy": 0.9},
        provenance={
            "evaluator": "smoke", "host": "gpu-host-17.lab.internal",
            "gpus": [{"index": 0, "name": "NVIDIA H100", "uuid": "GPU-1234"}],
            "dataset_files": {"held-out.safetensors": data.sha256},
            "isolation": {"level": "full", "mounted": ["/srv/worker/cache/ab12"]},
        },
    )  # fmt: skip
    inside = client_as("member").get(f"/api/v1/results/{result.pk}/").json()["provenance"]
    assert inside["host"] == "gpu-host-17.lab.internal"
    assert inside["gpus"] == [{"index": 0, "name": "NVIDIA H100", "uuid": "GPU-1234"}]
    assert inside["dataset_files"] == {"held-out.safetensors": data.sha256}
    assert inside["isolation"]["mounted"] == ["/srv/worker/cache/ab12"]

    outside = client_as("outsider").get(f"/api/v1/results/{result.pk}/").json()["provenance"]
    assert "host" not in outside and "dataset_files" not in outside
    assert outside["gpus"] == [{"index": 0, "name": "NVIDIA H100"}]
    assert outside["isolation"] == {"level": "full"}
    listed = client_as("outsider").get("/api/v1/results/").json()["results"]
    assert [row["provenance"].get("host") for row in listed] == [None]


def test_the_leaderboard_costs_the_same_queries_for_more_results(
    client_as, results, member, cpu_benchmark, make_model_version, post_result,
    django_assert_max_num_queries,
):  # fmt: skip
    client = client_as("member")
    url = f"/api/v1/benchmarks/{cpu_benchmark.pk}/leaderboard/"
    with django_assert_max_num_queries(8) as three_versions:
        client.get(url)
    for number in range(4):
        version = make_model_version(member, results["public"].institution, name=f"More {number}")
        post_result(member, version, cpu_benchmark, {"accuracy": 0.5, "loss": 1})
        post_result(member, version, cpu_benchmark, {"accuracy": 0.6, "loss": 1})
    with django_assert_max_num_queries(len(three_versions.captured_queries)):
        assert len(client.get(url).json()["entries"]) == 7
