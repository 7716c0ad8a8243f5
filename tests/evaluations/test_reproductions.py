import re
from html import unescape

import pytest

from apps.catalog.models import Visibility
from apps.evaluations import selectors
from apps.evaluations.models import Result

PEER = "https://kestrel-bay.example"
H100 = {"index": 0, "uuid": "GPU-h100-0", "name": "NVIDIA H100 80GB", "memory_bytes": 85 * 10**9}


def page(response) -> str:
    assert response.status_code == 200, response.status_code
    return unescape(response.content.decode())


def table_rows(html: str, css_class: str) -> list[list[str]]:
    body = re.search(rf'<table class="{css_class}">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert body, f"no {css_class} table"
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        for row in re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)
    ]


@pytest.fixture
def version(member, institution, make_model_version):
    return make_model_version(member, institution, name="Open model")


@pytest.fixture
def original(member, version, cpu_benchmark, post_result):
    return post_result(member, version, cpu_benchmark, {"accuracy": 0.9, "loss": 0.3}, days_ago=2)


@pytest.fixture
def reproduce(original):
    """reproduce(metrics, **fields): a result a peer node's pool ran again for `original`."""

    def _reproduce(metrics, **fields) -> Result:
        values = {
            "attempt": 1,
            "model_version": original.model_version,
            "benchmark": original.benchmark,
            "institution": original.institution,
            "metrics": metrics,
            "provenance": {"gpus": [H100, {**H100, "index": 1}], "evaluator": "smoke"},
            "reproduction_of": original,
            "ran_on_node": PEER,
            "ran_by_institution": "Kestrel Bay Lab",
            **fields,
        }
        return Result.objects.create(**values)

    return _reproduce


def _agreement(user, original):
    original = selectors.result_get(user=user, result_id=original.pk)
    return [
        (reproduction.agrees, [(c.name, c.difference) for c in reproduction.comparisons])
        for reproduction in selectors.result_reproductions(user=user, result=original)
    ]


def test_a_reproduction_agrees_only_on_exactly_equal_metrics_by_default(
    member, original, reproduce
):
    reproduce({"accuracy": 0.9, "loss": 0.3})
    reproduce({"accuracy": 0.9001, "loss": 0.3})

    agreement = _agreement(member, original)

    assert agreement[0] == (True, [("accuracy", 0.0), ("loss", 0.0)])
    assert agreement[1][0] is False
    assert agreement[1][1][0][1] == pytest.approx(0.0001)


def test_within_the_benchmarks_tolerance_a_reproduction_agrees(
    member, original, reproduce, cpu_benchmark
):
    cpu_benchmark.reproduction_tolerance = 0.01
    cpu_benchmark.save(update_fields=["reproduction_tolerance"])
    reproduce({"accuracy": 0.895, "loss": 0.309})
    reproduce({"accuracy": 0.88, "loss": 0.3})

    agreement = _agreement(member, original)

    assert [agrees for agrees, _differences in agreement] == [True, False]
    assert agreement[1][1][0][1] == pytest.approx(-0.02)


def test_a_reproduction_missing_a_declared_metric_differs(member, original, reproduce):
    reproduce({"accuracy": 0.9, "f1": 0.5})
    assert _agreement(member, original) == [(False, [("accuracy", 0.0), ("loss", None)])]


def test_a_reproduction_names_the_node_institution_and_hardware_that_ran_it(
    member, original, reproduce, settings, gpu_node
):
    reproduce({"accuracy": 0.9, "loss": 0.3})
    here = selectors.result_get(user=member, result_id=original.pk)
    (reproduction,) = selectors.result_reproductions(user=member, result=here)

    assert reproduction.ran_by == selectors.RanBy(PEER, PEER, "Kestrel Bay Lab")
    assert reproduction.hardware == "2 x NVIDIA H100 80GB"
    assert selectors.result_ran_by(here) == selectors.RanBy(
        settings.FEDERATION_NODE_URL, settings.NODE_NAME, gpu_node.institution.name
    )
    assert selectors.result_hardware(here) == "CPU"


def test_reproductions_are_counted_beside_the_entry_not_ranked_as_entries(
    member, original, reproduce, cpu_benchmark
):
    reproduce({"accuracy": 0.99, "loss": 0.01})  # would rank first if it were an entry
    metric = selectors.leaderboard_metric(cpu_benchmark, None)

    entries = selectors.leaderboard(user=member, benchmark=cpu_benchmark, metric=metric)

    assert [(entry.result, entry.runs) for entry in entries] == [(original, 1)]
    assert entries[0].reproductions == selectors.ReproductionSummary(1, False)
    reproduce({"accuracy": 0.9, "loss": 0.3})
    Result.objects.filter(metrics__accuracy=0.99).delete()
    (entry,) = selectors.leaderboard(user=member, benchmark=cpu_benchmark, metric=metric)
    assert entry.reproductions == selectors.ReproductionSummary(1, True)
    history = selectors.score_history(user=member, benchmark=cpu_benchmark, metric=metric)
    assert [[point.result_id for point in series.points] for series in history] == [[original.pk]]


def test_an_entry_without_reproductions_says_so(member, original, cpu_benchmark):
    metric = selectors.leaderboard_metric(cpu_benchmark, None)
    (entry,) = selectors.leaderboard(user=member, benchmark=cpu_benchmark, metric=metric)
    assert entry.reproductions == selectors.ReproductionSummary(0, None)


@pytest.fixture
def private_reproduction(member, institution, original, reproduce, make_model_version):
    """A reproduction of the public result that only its institution may see: it ran a
    private copy of the model."""
    private_copy = make_model_version(
        member, institution, name="Private copy", visibility=Visibility.PRIVATE
    )
    return reproduce({"accuracy": 0.5, "loss": 0.9}, model_version=private_copy)


def test_outsiders_neither_see_nor_count_a_reproduction_they_may_not_see(
    member, outsider, original, private_reproduction, cpu_benchmark, client_as
):
    metric = selectors.leaderboard_metric(cpu_benchmark, None)
    for user, count in ((member, 1), (outsider, 0)):
        here = selectors.result_get(user=user, result_id=original.pk)
        assert len(selectors.result_reproductions(user=user, result=here)) == count
        (entry,) = selectors.leaderboard(user=user, benchmark=cpu_benchmark, metric=metric)
        assert entry.reproductions.count == count

    body = client_as("outsider").get(f"/api/v1/results/{original.pk}/").json()
    assert body["reproductions"] == []
    hidden = client_as("outsider").get(f"/api/v1/results/{private_reproduction.pk}/")
    assert hidden.status_code == 404


def test_the_result_api_gives_the_original_and_the_compared_reproductions(
    api_client, original, reproduce, gpu_node, settings
):
    reproduction = reproduce({"accuracy": 0.9, "loss": 0.4})

    body = api_client.get(f"/api/v1/results/{original.pk}/").json()

    assert body["reproduction_of"] is None
    assert body["ran_by"] == {
        "node": settings.FEDERATION_NODE_URL,
        "node_name": settings.NODE_NAME,
        "institution": gpu_node.institution.name,
    }
    (listed,) = body["reproductions"]
    assert listed["id"] == reproduction.pk
    assert listed["ran_by"] == {"node": PEER, "node_name": PEER, "institution": "Kestrel Bay Lab"}
    assert listed["hardware"] == "2 x NVIDIA H100 80GB"
    assert listed["metrics"] == {"accuracy": 0.9, "loss": 0.4}
    assert listed["agrees"] is False
    assert [(c["name"], c["agrees"]) for c in listed["comparisons"]] == [
        ("accuracy", True),
        ("loss", False),
    ]
    assert listed["comparisons"][1]["difference"] == pytest.approx(0.1)
    detail = api_client.get(f"/api/v1/results/{reproduction.pk}/").json()
    assert detail["reproduction_of"] == original.pk and detail["reproductions"] == []
    listed_results = api_client.get("/api/v1/results/").json()["results"]
    assert {row["id"]: row["ran_by"]["institution"] for row in listed_results} == {
        original.pk: gpu_node.institution.name,
        reproduction.pk: "Kestrel Bay Lab",
    }


def test_a_reproduction_of_a_hidden_result_does_not_name_it(
    member, institution, outsider, original, reproduce, make_model_version, client_as
):
    hidden = make_model_version(member, institution, visibility=Visibility.PRIVATE)
    Result.objects.filter(pk=original.pk).update(model_version=hidden)
    reproduction = reproduce({"accuracy": 0.9, "loss": 0.3})

    url = f"/api/v1/results/{reproduction.pk}/"
    assert client_as("outsider").get(url).json()["reproduction_of"] is None
    assert client_as("member").get(url).json()["reproduction_of"] == original.pk


def test_the_leaderboard_api_counts_each_entrys_reproductions(
    api_client, original, reproduce, cpu_benchmark
):
    reproduce({"accuracy": 0.9, "loss": 0.3})
    reproduce({"accuracy": 0.9, "loss": 0.3})

    body = api_client.get(f"/api/v1/benchmarks/{cpu_benchmark.pk}/leaderboard/").json()

    assert [
        (e["result"]["id"], e["runs"], e["reproductions"], e["reproductions_agree"])
        for e in body["entries"]
    ] == [(original.pk, 1, 2, True)]


def test_the_result_page_tables_the_reproductions_and_links_back(
    client, original, reproduce, gpu_node, settings
):
    agreeing = reproduce({"accuracy": 0.9, "loss": 0.3})
    reproduce({"accuracy": 0.85, "loss": 0.35}, provenance={"gpus": "cpu"})

    html = page(client.get(f"/results/{original.pk}/"))

    assert f"Ran by</dt><dd>{gpu_node.institution.name} on {settings.NODE_NAME}" in html
    assert table_rows(html, "reproductions") == [
        [
            f"#{agreeing.pk}",
            PEER,
            "Kestrel Bay Lab",
            "2 x NVIDIA H100 80GB",
            "accuracy 0.9, loss 0.3",
            "agrees",
        ],
        [f"#{agreeing.pk + 1}", PEER, "Kestrel Bay Lab", "CPU", "accuracy 0.85, loss 0.35",
         "differs: accuracy by -0.05, loss by +0.05"],
    ]  # fmt: skip
    reproduction_page = page(client.get(f"/results/{agreeing.pk}/"))
    assert f'<a href="/results/{original.pk}/">result #{original.pk}</a>' in reproduction_page
    assert "Ran by</dt><dd>Kestrel Bay Lab on " + PEER in reproduction_page
    assert "each exactly equal to this result's" in html
    assert "reproductions-heading" not in reproduction_page


def test_the_leaderboard_and_result_list_pages_show_reproductions_and_who_ran_each(
    client, original, reproduce, cpu_benchmark, gpu_node
):
    reproduce({"accuracy": 0.9, "loss": 0.3})
    reproduce({"accuracy": 0.8, "loss": 0.3})

    html = page(client.get(f"/benchmarks/{cpu_benchmark.pk}/leaderboard/"))
    rows = table_rows(html, "leaderboard")
    assert len(rows) == 1
    assert rows[0][1] == "Open model 1.0" and rows[0][6] == "2, not all agree"
    assert rows[0][7].startswith(gpu_node.institution.name + " on ")
    listed = page(client.get("/results/"))
    assert "Kestrel Bay Lab on " + PEER in listed
