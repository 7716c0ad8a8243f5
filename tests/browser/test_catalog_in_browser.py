"""A researcher publishes a model in the portal, uploads a version through the page's script,
finds the model by searching, and checks the file's sha256."""

import hashlib

import onnx
import pytest
from onnx import TensorProto, helper
from playwright.sync_api import expect

from apps.catalog import services
from apps.catalog.models import ModelVersion
from tests.factories import PASSWORD, MembershipFactory


@pytest.fixture
def onnx_model(tmp_path):
    """A real, tiny ONNX model: one Identity node."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = tmp_path / "identity.onnx"
    onnx.save(model, path)
    return path


@pytest.fixture
def researcher(transactional_db):
    return MembershipFactory(
        user__username="ada",
        user__first_name="Ada",
        institution__name="Northbridge University",
        institution__slug="northbridge",
    ).user


def log_in(page, user) -> None:
    page.goto("/")
    page.get_by_role("link", name="Log in").click()
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("link", name=user.display_name)).to_be_visible()


def test_publish_a_model_upload_a_version_with_progress_and_find_it(
    page, live_server, researcher, artifact_dir, onnx_model
):
    sha256 = hashlib.sha256(onnx_model.read_bytes()).hexdigest()
    log_in(page, researcher)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Models").click()
    page.get_by_role("link", name="Publish a model").click()
    page.get_by_label("Institution").select_option(label="Northbridge University")
    page.get_by_label("Name").fill("Tiny Identity")
    page.get_by_label("Slug").fill("tiny-identity")
    page.get_by_label("Summary").fill("Returns its input unchanged.")
    page.get_by_label("License").fill("MIT")
    page.get_by_role("button", name="Create model").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Tiny Identity")

    page.get_by_role("link", name="Upload a version").click()
    page.get_by_label("Label").fill("v1")
    page.get_by_label("Files").set_input_files(onnx_model)
    page.get_by_label("Publish now").check()

    # The upload page's progress bars as they stand when the script submits the form: kept
    # across the navigation in sessionStorage.
    page.evaluate(
        """() => addEventListener("beforeunload", () => sessionStorage.setItem("progress",
            JSON.stringify([...document.querySelectorAll("progress")].map(bar =>
                [bar.value, bar.parentElement.querySelector(".upload-percent").textContent]))))"""
    )
    with (
        page.expect_request(
            lambda request: request.url.endswith("/api/v1/artifacts/") and request.method == "POST"
        ),
        page.expect_request(
            lambda request: request.url.endswith("/versions/new/") and request.method == "POST"
        ) as form_post,
    ):
        page.get_by_role("button", name="Upload version").click()

    expect(page.get_by_role("heading", name="Version v1")).to_be_visible()
    assert page.evaluate("() => JSON.parse(sessionStorage.getItem('progress'))") == [[100, "100%"]]
    form_body = form_post.value.post_data_buffer or b""
    assert f"identity.onnx:{sha256}".encode() in form_body
    assert onnx_model.read_bytes() not in form_body
    files = page.get_by_role("table")
    expect(files).to_contain_text("identity.onnx")
    expect(files).to_contain_text(sha256)
    assert ModelVersion.objects.get(label="v1").is_published

    header_search = page.get_by_role("search", name="Catalogue")
    header_search.get_by_label("Search the catalogue").fill("tiny identity")
    header_search.get_by_role("button", name="Search").click()
    results = page.get_by_role("region", name="Results")
    expect(results).to_contain_text("1 result")
    results.get_by_role("link", name="Tiny Identity").click()

    expect(page).to_have_url(f"{live_server.url}/models/northbridge/tiny-identity/")
    expect(page.get_by_text(sha256)).to_be_visible()


def test_an_upload_the_node_refuses_is_explained_next_to_the_file(
    page, live_server, researcher, artifact_dir, onnx_model, settings
):
    services.model_create(
        user=researcher,
        institution=researcher.memberships.get().institution,
        name="Tiny Identity",
        slug="tiny-identity",
        license="MIT",
    )
    settings.ARTIFACT_MAX_BYTES = 10
    log_in(page, researcher)

    page.goto("/models/northbridge/tiny-identity/versions/new/")
    page.get_by_label("Label").fill("v1")
    page.get_by_label("Files").set_input_files(onnx_model)
    page.get_by_role("button", name="Upload version").click()

    expect(page.get_by_role("alert")).to_contain_text("larger than this node's limit")
    expect(page.get_by_role("button", name="Upload version")).to_be_enabled()
    assert page.url.endswith("/versions/new/")
    assert not ModelVersion.objects.exists()
