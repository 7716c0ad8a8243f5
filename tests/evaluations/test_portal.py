import re
from html import unescape

import pytest

from apps.catalog.models import Visibility


def page(response) -> str:
    assert response.status_code == 200, response.status_code
    return unescape(response.content.decode())


def leaderboard_rows(html: str) -> list[list[str]]:
    body = re.search(r'<table class="leaderboard">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert body, "no leaderboard table"
    rows = re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        for row in rows
    ]


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
        "public_old": post_result(
            member, public, cpu_benchmark, {"accuracy": 0.8, "loss": 0.5}, days_ago=10
        ),
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


def test_the_leaderboard_page_ranks_versions_and_sorts_by_each_metric(
    client, member, results, cpu_benchmark
):
    client.force_login(member)
    url = f"/benchmarks/{cpu_benchmark.pk}/leaderboard/"
    rows = leaderboard_rows(page(client.get(url)))
    assert [row[:5] for row in rows] == [
        ["1", "Internal model 1.0", "Northbridge University", "0.95", "0.2"],
        ["2", "Open model 1.0", "Northbridge University", "0.9", "0.3"],
        ["3", "Their model 1.0", "Rheinau Institute", "0.7", "0.1"],
    ]
    assert rows[1][5] == "2"  # the open model ran twice; its best is shown
    html = page(client.get(f"{url}?metric=loss"))
    assert [row[1] for row in leaderboard_rows(html)] == [
        "Their model 1.0",
        "Internal model 1.0",
        "Open model 1.0",
    ]
    assert 'aria-sort="ascending"' in html and "lower is better" in html


def test_the_leaderboard_filters_by_institution(client, member, results, cpu_benchmark):
    client.force_login(member)
    html = page(client.get(f"/benchmarks/{cpu_benchmark.pk}/leaderboard/?institution=rheinau"))
    assert [row[1] for row in leaderboard_rows(html)] == ["Their model 1.0"]
    assert '<option value="rheinau" selected>' in html


def test_the_chart_draws_every_visible_result_over_time(client, member, results, cpu_benchmark):
    client.force_login(member)
    html = page(client.get(f"/benchmarks/{cpu_benchmark.pk}/leaderboard/"))
    chart = re.search(r'<svg role="img".*?</svg>', html, re.S).group(0)
    assert chart.count("<polyline") == 3  # one line per model version
    assert chart.count("<circle") == 4  # one dot per result
    assert "Open model 1.0: accuracy 0.8," in chart and "Open model 1.0: accuracy 0.9," in chart
    assert f'href="/results/{results["public_old"].pk}/"' in chart


def test_anonymous_visitors_see_only_public_results_on_the_leaderboard(
    client, results, cpu_benchmark
):
    html = page(client.get(f"/benchmarks/{cpu_benchmark.pk}/leaderboard/"))
    assert [row[1] for row in leaderboard_rows(html)] == ["Open model 1.0", "Their model 1.0"]
    assert "Internal model" not in html


def test_an_unknown_metric_shows_a_message_and_the_default_ranking(
    client, member, results, cpu_benchmark
):
    client.force_login(member)
    html = page(client.get(f"/benchmarks/{cpu_benchmark.pk}/leaderboard/?metric=bleu"))
    assert "ranks by accuracy, loss; not by 'bleu'" in html
    assert leaderboard_rows(html)[0][1] == "Internal model 1.0"


def test_the_result_page_shows_provenance_and_the_log_to_the_jobs_institution(
    client, member, results
):
    client.force_login(member)
    html = page(client.get(f"/results/{results['public'].pk}/"))
    assert "Open model 1.0 on Digits held out" in html
    assert "<code>smoke</code> 0.1.0" in html and "Seed</dt><dd>0" in html
    assert '"model.safetensors": "' + "ab" * 32 + '"' in html
    assert "scored 540 rows" in html


def test_others_see_a_public_results_provenance_but_not_its_log(client, outsider, results):
    client.force_login(outsider)
    html = page(client.get(f"/results/{results['public'].pk}/"))
    assert "Provenance" in html and "scored 540 rows" not in html
    assert client.get(f"/results/{results['internal'].pk}/").status_code == 404


def test_pages_link_to_the_leaderboard_and_results(client, member, results, cpu_benchmark):
    client.force_login(member)
    benchmark_page = page(client.get(f"/benchmarks/{cpu_benchmark.pk}/"))
    assert f'href="/benchmarks/{cpu_benchmark.pk}/leaderboard/"' in benchmark_page
    job_page = page(client.get(f"/compute/jobs/{results['public'].job_id}/"))
    assert f'href="/results/{results["public"].pk}/"' in job_page
    model_id = results["theirs"].model_version.model_id
    listed = page(client.get(f"/results/?model={model_id}"))
    assert f'href="/results/{results["theirs"].pk}/"' in listed
    assert f'href="/results/{results["public"].pk}/"' not in listed


def test_the_leaderboard_page_costs_the_same_queries_for_more_results(
    client, member, results, cpu_benchmark, make_model_version, post_result,
    django_assert_max_num_queries,
):  # fmt: skip
    client.force_login(member)
    url = f"/benchmarks/{cpu_benchmark.pk}/leaderboard/"
    with django_assert_max_num_queries(20) as before:
        page(client.get(url))
    for number in range(4):
        version = make_model_version(member, results["public"].institution, name=f"More {number}")
        post_result(member, version, cpu_benchmark, {"accuracy": 0.5, "loss": 1})
    with django_assert_max_num_queries(len(before.captured_queries)):
        assert len(leaderboard_rows(page(client.get(url)))) == 7
