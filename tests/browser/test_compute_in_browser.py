"""An institution admin adds a compute node in the portal and starts its worker with the token
the page shows once; a researcher evaluates a model from the model's page and watches the job
finish on the pool."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from apps.accounts.models import Membership
from apps.catalog import services as catalog_services
from tests.browser.test_catalog_in_browser import log_in
from tests.catalog.conftest import store
from tests.catalog.samples import safetensors_bytes
from tests.conftest import start_worker_process
from tests.factories import InstitutionFactory, MembershipFactory


@pytest.fixture
def dispatcher(control_worker, settings):
    """Dispatcher runs requested by the portal go to the test's control-plane worker."""
    settings.CELERY_TASK_DEFAULT_QUEUE = control_worker
    settings.COMPUTE_HEARTBEAT_SECONDS = 1


def test_a_node_added_in_the_portal_runs_an_evaluation_a_researcher_submits(
    browser, live_server, dispatcher, artifact_dir, settings, tmp_path
):
    institution = InstitutionFactory(name="Northbridge University", slug="northbridge")
    admin = MembershipFactory(institution=institution, role=Membership.Role.ADMIN).user
    researcher = MembershipFactory(institution=institution).user
    model = catalog_services.model_create(
        user=researcher, institution=institution, name="Aurora", slug="aurora", license="MIT",
        summary="A model to evaluate.",
    )  # fmt: skip
    weights = store(researcher, safetensors_bytes(8), "model.safetensors")
    catalog_services.version_create(
        user=researcher, model=model, label="1.0", publish=True,
        files=[("model.safetensors", weights.sha256)],
    )  # fmt: skip
    data = store(researcher, safetensors_bytes(32), "data.safetensors")
    dataset = catalog_services.dataset_create(
        user=researcher, institution=institution, name="Pool data", slug="pool-data",
        license="CC-BY-4.0", files=[("data.safetensors", data.sha256)],
    )  # fmt: skip
    catalog_services.benchmark_create(
        user=researcher, institution=institution, name="Pool check", slug="pool-check",
        task_type="pool-check", dataset=dataset, evaluator="smoke", evaluator_config={},
        metrics=[{"name": "files", "higher_is_better": True}], gpu_count=0,
        time_limit_minutes=5,
    )  # fmt: skip

    operator = browser.new_context(base_url=live_server.url).new_page()
    log_in(operator, admin)
    operator.goto("/compute/nodes/")
    operator.get_by_role("link", name="Add a node").click()
    operator.get_by_label("Name").fill("cpu-01")
    operator.get_by_role("button", name="Add node").click()
    token = operator.locator("#node-token").inner_text()
    assert token.startswith("rxn_")
    operator.reload()
    expect(operator.locator("#node-token")).to_have_count(0)  # shown once

    worker = start_worker_process(
        token=token,
        node_url=live_server.url,
        broker_url=settings.CELERY_BROKER_URL,
        folder=tmp_path / "worker",
    )
    try:
        page = browser.new_context(base_url=live_server.url).new_page()
        page.set_default_timeout(15_000)
        log_in(page, researcher)
        page.goto(reverse("catalog:model-detail", args=["northbridge", "aurora"]))
        page.get_by_role("link", name="Evaluate version 1.0 on a benchmark").click()
        page.get_by_label("Benchmark").select_option(label="Pool check")
        page.get_by_role("button", name="Queue the evaluation").click()
        expect(page.get_by_text("has been queued")).to_be_visible()
        # The job page refreshes itself while the job is active.
        expect(page.locator(".state-succeeded").first).to_be_visible(timeout=60_000)
        result = page.get_by_role("region", name="Result")
        expect(result.get_by_role("row", name="files 2")).to_be_visible()  # model + dataset

        result.get_by_role("link", name="Provenance").click()
        provenance = page.get_by_role("region", name="Provenance")
        expect(provenance.get_by_text("smoke", exact=True)).to_be_visible()
        expect(provenance.get_by_text("isolated", exact=False).first).to_be_visible()
        expect(page.get_by_role("region", name="Log of attempt 1")).to_contain_text("sha256")
        page.get_by_role("link", name="leaderboard").first.click()
        leaderboard = page.get_by_role("table")
        expect(leaderboard.get_by_role("row").nth(1)).to_contain_text("Aurora 1.0")
        expect(page.locator("svg.score-chart circle")).to_have_count(1)
    finally:
        worker.stop()
