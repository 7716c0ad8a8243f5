import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError

from apps.catalog.models import Visibility
from apps.evaluations import selectors


@pytest.fixture
def two_versions(member, institution, make_model_version):
    return (
        make_model_version(member, institution, name="Alpha"),
        make_model_version(member, institution, name="Beta"),
    )


def _ranked(entries):
    return [(e.rank, e.result.model_version.model.name, e.score, e.runs) for e in entries]


def test_the_leaderboard_keeps_each_versions_best_result_best_first(
    member, cpu_benchmark, two_versions, post_result
):
    alpha, beta = two_versions
    post_result(member, alpha, cpu_benchmark, {"accuracy": 0.81, "loss": 0.5}, days_ago=3)
    best_alpha = post_result(member, alpha, cpu_benchmark, {"accuracy": 0.93, "loss": 0.3})
    post_result(member, alpha, cpu_benchmark, {"accuracy": 0.90, "loss": 0.2})
    post_result(member, beta, cpu_benchmark, {"accuracy": 0.88, "loss": 0.1})

    metric = selectors.leaderboard_metric(cpu_benchmark, None)
    entries = selectors.leaderboard(user=member, benchmark=cpu_benchmark, metric=metric)

    assert metric.name == "accuracy"
    assert _ranked(entries) == [(1, "Alpha", 0.93, 3), (2, "Beta", 0.88, 1)]
    assert entries[0].result == best_alpha


def test_a_lower_is_better_metric_ranks_the_smallest_first(
    member, cpu_benchmark, two_versions, post_result
):
    alpha, beta = two_versions
    post_result(member, alpha, cpu_benchmark, {"accuracy": 0.93, "loss": 0.3})
    post_result(member, alpha, cpu_benchmark, {"accuracy": 0.90, "loss": 0.2})
    post_result(member, beta, cpu_benchmark, {"accuracy": 0.88, "loss": 0.1})

    metric = selectors.leaderboard_metric(cpu_benchmark, "loss")
    entries = selectors.leaderboard(user=member, benchmark=cpu_benchmark, metric=metric)

    assert _ranked(entries) == [(1, "Beta", 0.1, 1), (2, "Alpha", 0.2, 2)]


def test_equal_scores_keep_the_order_they_were_reached_in(
    member, cpu_benchmark, two_versions, post_result
):
    alpha, beta = two_versions
    post_result(member, beta, cpu_benchmark, {"accuracy": 0.9, "loss": 1}, days_ago=2)
    post_result(member, alpha, cpu_benchmark, {"accuracy": 0.9, "loss": 1}, days_ago=1)
    metric = selectors.leaderboard_metric(cpu_benchmark, None)
    entries = selectors.leaderboard(user=member, benchmark=cpu_benchmark, metric=metric)
    assert [e.result.model_version.model.name for e in entries] == ["Beta", "Alpha"]


def test_an_equal_score_reached_later_by_an_older_entry_ranks_after_the_earlier_one(
    member, cpu_benchmark, two_versions, post_result
):
    alpha, beta = two_versions
    post_result(member, alpha, cpu_benchmark, {"accuracy": 0.5, "loss": 1}, days_ago=3)
    post_result(member, beta, cpu_benchmark, {"accuracy": 0.9, "loss": 1}, days_ago=2)
    post_result(member, alpha, cpu_benchmark, {"accuracy": 0.9, "loss": 1}, days_ago=1)
    metric = selectors.leaderboard_metric(cpu_benchmark, None)
    entries = selectors.leaderboard(user=member, benchmark=cpu_benchmark, metric=metric)
    assert _ranked(entries) == [(1, "Beta", 0.9, 1), (2, "Alpha", 0.9, 2)]


def test_a_version_whose_results_lack_the_metric_is_listed_last_unranked(
    member, cpu_benchmark, two_versions, post_result
):
    alpha, beta = two_versions
    post_result(member, alpha, cpu_benchmark, {"loss": 0.4})
    post_result(member, beta, cpu_benchmark, {"accuracy": 0.5, "loss": 0.9})
    metric = selectors.leaderboard_metric(cpu_benchmark, None)
    entries = selectors.leaderboard(user=member, benchmark=cpu_benchmark, metric=metric)
    assert _ranked(entries) == [(1, "Beta", 0.5, 1), (None, "Alpha", None, 1)]


def test_an_unknown_metric_is_refused_with_the_ones_there_are(cpu_benchmark):
    with pytest.raises(ValidationError) as refused:
        selectors.leaderboard_metric(cpu_benchmark, "bleu")
    assert refused.value.message_dict["metric"] == [
        "This benchmark ranks by accuracy, loss; not by 'bleu'."
    ]


def test_the_institution_filter_keeps_the_models_it_publishes(
    member, outsider, institution, other_institution, cpu_benchmark, make_model_version, post_result
):
    ours = make_model_version(member, institution, name="Ours")
    theirs = make_model_version(outsider, other_institution, name="Theirs")
    post_result(member, ours, cpu_benchmark, {"accuracy": 0.7, "loss": 1})
    post_result(member, theirs, cpu_benchmark, {"accuracy": 0.9, "loss": 1})
    metric = selectors.leaderboard_metric(cpu_benchmark, None)

    everyone = selectors.leaderboard(user=member, benchmark=cpu_benchmark, metric=metric)
    only_theirs = selectors.leaderboard(
        user=member, benchmark=cpu_benchmark, metric=metric, institution=other_institution
    )

    assert [e.result.model_version.model.name for e in everyone] == ["Theirs", "Ours"]
    assert _ranked(only_theirs) == [(1, "Theirs", 0.9, 1)]
    assert list(selectors.institutions_with_results(user=member, benchmark=cpu_benchmark)) == [
        institution,
        other_institution,
    ]


@pytest.mark.parametrize(
    ("visibility", "who_sees"),
    [
        (Visibility.PUBLIC, {"anonymous", "outsider", "member", "staff"}),
        (Visibility.INSTITUTION, {"member", "staff"}),
        (Visibility.PRIVATE, {"member", "staff"}),  # member created it
    ],
)
def test_results_follow_the_visibility_of_their_model(
    visibility,
    who_sees,
    member,
    institution,
    outsider,
    staff,
    cpu_benchmark,
    make_model_version,
    post_result,
):
    version = make_model_version(member, institution, name="Hidden?", visibility=visibility)
    result = post_result(member, version, cpu_benchmark, {"accuracy": 0.9, "loss": 1})
    viewers = {"anonymous": AnonymousUser(), "outsider": outsider, "member": member, "staff": staff}
    metric = selectors.leaderboard_metric(cpu_benchmark, None)
    for name, viewer in viewers.items():
        listed = result in selectors.result_list(user=viewer)
        ranked = selectors.leaderboard(user=viewer, benchmark=cpu_benchmark, metric=metric)
        history = selectors.score_history(user=viewer, benchmark=cpu_benchmark, metric=metric)
        assert listed == (name in who_sees), name
        assert bool(ranked) == (name in who_sees), name
        assert bool(history) == (name in who_sees), name


def test_a_private_benchmark_hides_its_results_even_for_a_public_model(
    member, outsider, institution, make_cpu_benchmark, make_model_version, post_result
):
    private = make_cpu_benchmark(member, institution, visibility=Visibility.PRIVATE)
    version = make_model_version(member, institution, name="Public model")
    result = post_result(member, version, private, {"accuracy": 0.9, "loss": 1})
    assert result in selectors.result_list(user=member)
    assert result not in selectors.result_list(user=outsider)
    assert result not in selectors.result_list(user=AnonymousUser())


def test_the_score_history_is_one_series_per_version_in_time_order(
    member, cpu_benchmark, two_versions, post_result
):
    alpha, beta = two_versions
    post_result(member, alpha, cpu_benchmark, {"accuracy": 0.6, "loss": 1}, days_ago=5)
    post_result(member, beta, cpu_benchmark, {"accuracy": 0.7, "loss": 1}, days_ago=4)
    post_result(member, alpha, cpu_benchmark, {"accuracy": 0.8, "loss": 1}, days_ago=1)
    metric = selectors.leaderboard_metric(cpu_benchmark, None)
    series = selectors.score_history(user=member, benchmark=cpu_benchmark, metric=metric)
    assert [(s.label, [p.score for p in s.points]) for s in series] == [
        ("Alpha 1.0", [0.6, 0.8]),
        ("Beta 1.0", [0.7]),
    ]


def test_a_result_keeps_what_the_node_knows_beside_the_workers_provenance(
    member, institution, gpu_node, cpu_benchmark, two_versions, post_result
):
    result = post_result(member, two_versions[0], cpu_benchmark, {"accuracy": 0.9, "loss": 1})
    job = result.job
    assert (result.model_version, result.benchmark, result.institution, result.node) == (
        two_versions[0],
        cpu_benchmark,
        institution,
        gpu_node,
    )
    provenance = selectors.result_provenance(result)
    assert provenance["evaluator"] == "smoke" and provenance["seed"] == 0
    assert provenance["node"] == "gpu-01" and provenance["node_institution"] == institution.slug
    assert provenance["institution"] == institution.slug
    assert provenance["gpu_seconds"] == job.gpu_seconds == result.gpu_seconds
    assert provenance["started_at"] == job.started_at.isoformat()
    assert (provenance["job"], provenance["attempt"]) == (job.pk, 1)
