"""A researcher watches a benchmark from its page; a colleague's result on it and a comment on
the researcher's model ring the bell; the researcher marks one read, opens the other, and the
count goes away."""

import re

from playwright.sync_api import expect

from apps.catalog import services as catalog_services
from tests.browser.test_catalog_in_browser import log_in
from tests.evaluations.conftest import (  # noqa: F401 - shared fixtures
    gpu_node,
    make_benchmark,
    make_cpu_benchmark,
    make_model_version,
    post_result,
)
from tests.factories import MembershipFactory


def test_the_bell_counts_what_happened_and_empties_as_it_is_read(
    page, live_server, artifact_dir, member, institution, outsider,
    make_cpu_benchmark, make_model_version, post_result,  # noqa: F811 - the imported fixtures
):  # fmt: skip
    model = catalog_services.model_create(
        user=member, institution=institution, name="Heron", slug="heron", license="MIT"
    )
    benchmark = make_cpu_benchmark(member, institution, name="Digits held out")
    colleague = MembershipFactory(institution=institution).user
    log_in(page, member)
    bell = page.get_by_role("navigation", name="Main").get_by_role(
        "link", name=re.compile(r"^Notifications")
    )
    expect(bell).to_have_accessible_name("Notifications")

    page.goto(f"/benchmarks/{benchmark.pk}/")
    page.get_by_role("button", name="Watch").click()
    expect(page.get_by_role("button", name="Unwatch")).to_be_visible()

    catalog_services.comment_create(user=outsider, target=model, body="Which data?")
    result = post_result(
        colleague,
        make_model_version(colleague, institution, name="Kite"),
        benchmark,
        {"accuracy": 0.93, "loss": 0.2},
    )
    page.reload()
    expect(bell).to_have_accessible_name("Notifications: 2 unread")

    bell.click()
    expect(page).to_have_url(re.compile(r"/notifications/$"))
    comment = f"{outsider.display_name} commented on Heron"
    expect(page.locator(".notification.unread")).to_have_count(2)
    page.locator(".notification", has_text=comment).get_by_role("button", name="Mark read").click()
    expect(bell).to_have_accessible_name("Notifications: 1 unread")
    expect(page.locator(".notification.unread")).to_have_count(1)

    page.get_by_role("link", name="New result on Digits held out: Kite 1.0").click()
    expect(page).to_have_url(re.compile(rf"/results/{result.pk}/$"))
    expect(bell).to_have_accessible_name("Notifications")
