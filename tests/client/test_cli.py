"""The `rx` command line against a live node (no worker): login, refusals, publishing,
downloads, BibTeX import, following a job that waits, and the library's retries."""

import hashlib
import http.server
import json
import os
import signal
import socket
import stat
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from apps.catalog.models import ModelVersion, Paper, ResearchModel
from apps.compute import services as compute_services
from apps.compute.models import Job
from rx_client import ApiError, Client, RxError, config
from rx_client.jobs import follow
from rx_client.transfer import ModelReference, download_artifact, download_version
from tests.catalog.samples import safetensors_bytes
from tests.conftest import wait_for
from tests.factories import isolated

pytestmark = [pytest.mark.usefixtures("artifact_dir"), pytest.mark.timeout(180)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_login_checks_the_token_and_saves_it_for_its_owner_only(
    rx_logged_out, live_server, member, member_token
):
    done = rx_logged_out("login", "--url", live_server.url, stdin=member_token + "\n")
    assert done.returncode == 0, done.stderr
    path = rx_logged_out.home / ".config" / "research-exchange" / "credentials.json"
    assert f"as {member.username}" in done.stdout and str(path) in done.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {"url": live_server.url, "token": member_token}

    whoami = rx_logged_out("whoami")
    assert whoami.returncode == 0, whoami.stderr
    assert (
        whoami.stdout.startswith(f"{member.username} (") and "northbridge: member" in whoami.stdout
    )

    # The saved token is never sent to another node named by RX_URL.
    elsewhere = rx_logged_out("whoami", RX_URL=f"http://127.0.0.1:{_free_port()}")
    assert elsewhere.returncode == 2 and "not logged in" in elsewhere.stderr

    assert rx_logged_out("logout").returncode == 0
    assert not path.exists()
    after = rx_logged_out("whoami")
    assert after.returncode == 2 and "not logged in: run rx login" in after.stderr


def test_saving_a_login_is_not_stopped_by_a_file_an_earlier_killed_run_left(tmp_path, monkeypatch):
    # In a container each run may get the same process id as the one killed while saving.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    folder = tmp_path / "research-exchange"
    folder.mkdir(mode=0o700)
    (folder / f".credentials.json.{os.getpid()}").write_text("{}")
    path = config.save("http://node.example.org/", "rx_token")
    assert json.loads(path.read_text()) == {"url": "http://node.example.org", "token": "rx_token"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_saved_login_readable_by_others_is_made_its_owners_alone(rx_logged_out, live_server):
    path = rx_logged_out.home / ".config" / "research-exchange" / "credentials.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"url": live_server.url, "token": "rx_copied"}))
    path.chmod(0o644)  # as a copy or a restore from a backup may leave it
    rx_logged_out("whoami")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_login_with_a_refused_token_saves_nothing_and_says_so(rx_logged_out, live_server):
    done = rx_logged_out("login", "--url", live_server.url, stdin="rx_not-a-real-token\n")
    assert done.returncode == 2
    assert done.stderr == "rx: the token was refused (Invalid API token.); nothing was saved\n"
    assert not (rx_logged_out.home / ".config" / "research-exchange").exists()


def test_login_over_plain_http_to_another_host_warns_before_the_token_is_sent(rx_logged_out):
    done = rx_logged_out("login", "--url", "http://node.invalid", stdin="rx_token\n")
    warning = "rx: warning: http://node.invalid is plain http, so the token travels unencrypted"
    assert done.stderr.startswith(warning), done.stderr
    assert done.returncode == 2 and "cannot reach http://node.invalid" in done.stderr


def test_a_bad_token_in_the_environment_is_named_in_a_clear_message(rx):
    done = rx("whoami", RX_TOKEN="rx_wrong")
    assert done.returncode == 2
    assert done.stderr.startswith("rx: the token in RX_TOKEN was refused (")
    assert "run rx login" in done.stderr and "Traceback" not in done.stderr


def test_a_node_that_is_down_is_reported_as_unreachable(rx):
    url = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    done = rx("results", "list", RX_URL=url, RX_RETRIES="0")
    assert done.returncode == 2
    assert f"rx: cannot reach {url}: is the node running? (connection refused)" in done.stderr
    assert time.monotonic() - started < 10


def test_refusals_show_the_api_message_and_exit_2(rx, other_institution, tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(safetensors_bytes(8))
    done = rx(
        "models", "publish", str(folder), "--institution", "rheinau", "--model", "m", "--license",
        "MIT",
    )  # fmt: skip
    assert done.returncode == 2
    assert "Only members of Rheinau Institute can publish for it. (HTTP 403)" in done.stderr
    assert not ResearchModel.objects.exists()

    missing = rx("eval", "show", "999999")
    assert missing.returncode == 2 and "(HTTP 404)" in missing.stderr

    usage = rx("eval", "submit", "--model-version", "not a reference", "--benchmark", "1")
    assert usage.returncode == 2 and "is not INSTITUTION/MODEL[@LABEL]" in usage.stderr


def test_publish_uploads_a_folder_once_and_a_new_version_reuses_the_stored_files(
    rx, institution, tmp_path
):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(safetensors_bytes(16))
    (folder / "README.md").write_text("# A model\n")
    (folder / ".DS_Store").write_bytes(b"\0")
    args = ["models", "publish", str(folder), "--institution", "northbridge", "--model", "aurora"]

    without_license = rx(*args)
    assert without_license.returncode == 2 and "--license MIT" in without_license.stderr

    first = rx(*args, "--license", "MIT", "--name", "Aurora", "--notes", "First cut.")
    assert first.returncode == 0, first.stderr
    assert "Published northbridge/aurora@1.0" in first.stdout
    assert "model.safetensors: uploaded" in first.stderr and "README.md: uploaded" in first.stderr
    version = ModelVersion.objects.get(model__slug="aurora", label="1.0")
    assert version.is_published and version.release_notes == "First cut."
    assert version.model.name == "Aurora" and version.model.license == "MIT"
    stored = {f.filename: f.artifact.sha256 for f in version.files.select_related("artifact")}
    assert stored == {
        "model.safetensors": hashlib.sha256(safetensors_bytes(16)).hexdigest(),
        "README.md": hashlib.sha256(b"# A model\n").hexdigest(),
    }

    again = rx(*args)
    assert again.returncode == 0, again.stderr
    assert "already published" in again.stdout and "uploaded" not in again.stderr

    second = rx(*args, "--version", "1.1")
    assert second.returncode == 0, second.stderr
    assert "model.safetensors: the node has it already" in second.stderr
    assert "uploaded" not in second.stderr
    assert ModelVersion.objects.get(model__slug="aurora", label="1.1").files.count() == 2

    (folder / "model.safetensors").write_bytes(safetensors_bytes(17))
    changed = rx(*args)
    assert changed.returncode == 2 and "published with other files" in changed.stderr


def test_download_checks_each_file_and_resumes_a_partial_one(rx, institution, tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    weights = safetensors_bytes(300_000)
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "card.md").write_text("card\n")
    published = rx(
        "models", "publish", str(folder), "--institution", "northbridge", "--model", "big",
        "--license", "Apache-2.0",
    )  # fmt: skip
    assert published.returncode == 0, published.stderr

    dest = tmp_path / "downloaded"
    first = rx("models", "download", "northbridge/big", "--dest", str(dest))
    assert first.returncode == 0, first.stderr
    assert (dest / "model.safetensors").read_bytes() == weights
    assert f"{dest / 'model.safetensors'}: downloaded, sha256 verified" in first.stdout

    (dest / "model.safetensors").unlink()
    half = len(weights) // 2
    (dest / "model.safetensors.part").write_bytes(weights[:half])
    resumed = rx("models", "download", "northbridge/big@1.0", "--dest", str(dest))
    assert resumed.returncode == 0, resumed.stderr
    assert f"model.safetensors: resuming at {half} of {len(weights)} bytes" in resumed.stderr
    assert f"{dest / 'model.safetensors'}: resumed, sha256 verified" in resumed.stdout
    assert f"{dest / 'card.md'}: present" in resumed.stdout
    assert (dest / "model.safetensors").read_bytes() == weights
    assert not (dest / "model.safetensors.part").exists()

    # A partial file that is not the start of the right one is found out and fetched again.
    (dest / "model.safetensors").unlink()
    (dest / "model.safetensors.part").write_bytes(b"\xff" * half)
    repaired = rx("models", "download", "northbridge/big", "--dest", str(dest))
    assert repaired.returncode == 0, repaired.stderr
    assert "does not match its sha256; downloading it again" in repaired.stderr
    assert (dest / "model.safetensors").read_bytes() == weights

    unknown = rx("models", "download", "northbridge/big@9.9", "--dest", str(dest))
    assert unknown.returncode == 2 and "has no version 9.9 that you can see" in unknown.stderr


BIBTEX = r"""
@article{vaswani2017,
  title = {Attention Is All You Need},
  author = {Vaswani, Ashish and Shazeer, Noam},
  journal = {Advances in Neural Information Processing Systems},
  year = {2017},
  doi = {10.48550/arXiv.1706.03762},
}

@article{untitled2020,
  author = {Nobody, Anne},
  year = {2020},
}
"""


def test_bibtex_import_keeps_the_good_entries_and_reports_the_bad_by_key(rx, institution, tmp_path):
    path = tmp_path / "refs.bib"
    path.write_text(BIBTEX)
    done = rx(
        "papers", "import-bibtex", str(path), "--institution", "northbridge", "--visibility",
        "institution",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    paper = Paper.objects.get()
    assert paper.title == "Attention Is All You Need" and paper.visibility == "institution"
    assert f"imported paper {paper.pk}: " in done.stdout
    assert "refused untitled2020" in done.stdout and "1 imported, 1 refused" in done.stdout

    clean = tmp_path / "clean.bib"
    clean.write_text(BIBTEX.split("@article{untitled2020")[0].replace("vaswani2017", "v2"))
    # The same DOI is public nowhere yet: an institution-only copy may share it.
    again = rx("papers", "import-bibtex", str(clean), "--institution", "northbridge")
    assert again.returncode == 0, again.stdout
    assert "1 imported, 0 refused" in again.stdout


def test_a_bibtex_file_that_is_not_utf8_is_refused_with_a_message_not_a_traceback(rx, tmp_path):
    path = tmp_path / "latin1.bib"
    path.write_bytes(
        "@article{m\u00fcller2020, title = {\u00dcber}, year = {2020}}".encode("latin-1")
    )
    done = rx("papers", "import-bibtex", str(path), "--institution", "northbridge")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"rx: {path} is not UTF-8 text (byte 0xfc at 10)")
    assert not Paper.objects.exists()


@pytest.fixture
def idle_cpu_node(institution_admin, institution):
    """A registered CPU node whose worker is not running: jobs wait for it."""
    node, _token = compute_services.node_create(
        user=institution_admin, institution=institution, name="idle-cpu"
    )
    return compute_services.node_register(node=node, gpus=[], cpu_slots=1, host_info=isolated())


def test_ctrl_c_while_waiting_leaves_the_job_queued_and_says_how_to_follow_it(
    rx, member, institution, idle_cpu_node, make_benchmark, tmp_path
):
    benchmark = make_benchmark(member, institution, gpu_count=0)
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(safetensors_bytes(12))
    args = ["--institution", "northbridge", "--model", "waiting", "--license", "MIT"]
    assert rx("models", "publish", str(folder), *args).returncode == 0

    process, stdout_file, stderr_file = rx.popen(
        "eval", "submit", "--model-version", "northbridge/waiting@1.0",
        "--benchmark", str(benchmark.pk), "--wait", "--poll", "0.3",
    )  # fmt: skip
    try:
        assert wait_for(lambda: "in the queue" in stderr_file.read_text(), timeout=60)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    stdout, stderr = stdout_file.read_text(), stderr_file.read_text()
    job = Job.objects.get()
    assert process.returncode == 130, stderr
    assert f"Submitted job {job.pk}: waiting 1.0 on {benchmark.name}" in stdout
    assert f"job {job.pk}: pending" in stderr
    assert f"Follow it again with: rx eval wait {job.pk}" in stderr
    job.refresh_from_db()
    # Nothing dispatches here: the job waits at the head of the queue.
    assert job.state == Job.State.PENDING
    assert f"job {job.pk}: position 1 of 1 in the queue" in stderr

    shown = rx("eval", "show", str(job.pk), "--json")
    body = json.loads(shown.stdout)
    assert body["id"] == job.pk and body["state"] == "pending"
    assert body["queue"]["position"] == 1
    shown = rx("eval", "show", str(job.pk))
    assert shown.returncode == 0 and "position 1 of 1 in the queue" in shown.stdout

    cancelled = rx("eval", "cancel", str(job.pk), "--reason", "not needed")
    assert cancelled.returncode == 0 and f"job {job.pk}: cancelled" in cancelled.stdout
    waited = rx("eval", "wait", str(job.pk))
    assert waited.returncode == 3 and f"job {job.pk} was cancelled" in waited.stdout


def test_submit_wait_json_prints_only_the_ended_job_as_json_on_stdout(
    rx, member, institution, idle_cpu_node, make_benchmark, tmp_path
):
    benchmark = make_benchmark(member, institution, gpu_count=0)
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(safetensors_bytes(12))
    args = ["--institution", "northbridge", "--model", "scripted", "--license", "MIT"]
    assert rx("models", "publish", str(folder), *args).returncode == 0

    process, stdout_file, stderr_file = rx.popen(
        "eval", "submit", "--model-version", "northbridge/scripted@1.0",
        "--benchmark", str(benchmark.pk), "--wait", "--json", "--poll", "0.3",
    )  # fmt: skip
    try:
        assert wait_for(lambda: "in the queue" in stderr_file.read_text(), timeout=60)
        compute_services.job_cancel(user=member, job=Job.objects.get(), reason="scripted")
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    job = Job.objects.get()
    assert process.returncode == 3, stderr_file.read_text()
    body = json.loads(stdout_file.read_text())
    assert body["id"] == job.pk and body["state"] == "cancelled"
    assert f"Submitted job {job.pk}" in stderr_file.read_text()


def test_the_library_retries_a_throttled_request_after_backing_off(
    live_server, settings, member_token
):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "1000/second", "user": "2/second"},
    }
    retries = []

    def heard(*retry) -> None:
        retries.append(retry)

    with Client(live_server.url, member_token, backoff=0.3, on_retry=heard) as client:
        names = {client.me()["username"] for _ in range(4)}
    assert len(names) == 1
    assert retries and all(what.startswith("HTTP 429") for what, *_ in retries)

    with (
        Client(live_server.url, member_token, retries=0) as client,
        pytest.raises(ApiError) as refused,
    ):
        for _ in range(20):
            client.me()
    assert refused.value.status == 429 and refused.value.code == "throttled"
    assert "Request was throttled" in refused.value.message


def test_a_file_over_the_nodes_limit_is_refused_with_its_message_and_not_retried(
    rx, institution, settings, tmp_path
):
    settings.ARTIFACT_MAX_BYTES = 64 * 1024
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(safetensors_bytes(200_000))
    done = rx(
        "models", "publish", str(folder), "--institution", "northbridge", "--model", "huge",
        "--license", "MIT", RX_RETRIES="3",
    )  # fmt: skip
    assert done.returncode == 2
    assert "(HTTP 413)" in done.stderr and "try 2 of" not in done.stderr, done.stderr
    assert not ModelVersion.objects.exists()


def test_publish_again_finishes_a_draft_that_an_interrupted_run_left(
    rx, live_server, member_token, institution, tmp_path
):
    folder = tmp_path / "weights"
    folder.mkdir()
    weights = folder / "model.safetensors"
    weights.write_bytes(safetensors_bytes(20))
    (folder / "NOTES.md").write_text("notes\n")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    # What a run cut off after its first upload leaves: the model and a draft with one file.
    with Client(live_server.url, member_token) as client:
        model = client.model_create(
            institution="northbridge", slug="draft", name="Draft", license="MIT"
        )
        client.artifact_upload(weights, sha256=digest)
        client.version_create(
            model["id"], label="1.0", files=[{"filename": weights.name, "sha256": digest}]
        )

    done = rx("models", "publish", str(folder), "--institution", "northbridge", "--model", "draft")
    assert done.returncode == 0, done.stderr
    assert "NOTES.md: uploaded" in done.stderr and "model.safetensors" not in done.stderr
    version = ModelVersion.objects.get(model__slug="draft")
    assert version.is_published
    assert sorted(version.files.values_list("filename", flat=True)) == [
        "NOTES.md",
        "model.safetensors",
    ]


class _Node(http.server.BaseHTTPRequestHandler):
    """A node that misbehaves as a test needs: `answer(handler)` writes each answer."""

    answer: Callable[["_Node"], None]
    seen: list[tuple[str, str, dict[str, str]]]

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, dict(self.headers)))
        self.answer(self)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.seen.append(("POST", self.path, dict(self.headers)))
        self.answer(self)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def stand_in_node():
    """Starts a node of the test's own answering with `answer`; yields (url, requests seen)."""
    servers = []

    def start(answer: Callable[[_Node], None]) -> tuple[str, list]:
        seen: list = []
        handler = type("Handler", (_Node,), {"answer": staticmethod(answer), "seen": seen})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", seen

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _json_answer(handler: _Node, status: int, body: object) -> None:
    payload = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def test_a_submission_answered_500_is_not_sent_again(stand_in_node):
    # A node answers 500 also after its transaction committed (a callback run on commit, such
    # as enqueueing the dispatcher, failed): the job exists, and a second POST makes another.
    url, seen = stand_in_node(
        lambda handler: _json_answer(
            handler,
            500,
            {"error": {"status": 500, "code": "server_error", "message": "failed", "fields": {}}},
        )
    )
    with Client(url, "rx_token", backoff=0.01) as client, pytest.raises(ApiError) as failed:
        client.job_submit(model_version=1, benchmark=1)
    assert failed.value.status == 500
    assert str(failed.value) == (
        "failed; POST /api/v1/jobs/ may have been carried out before the failure: check before "
        "sending it again"
    )
    assert [method for method, *_ in seen] == ["POST"]


def test_an_error_without_the_apis_body_is_said_once_by_its_status(rx, stand_in_node):
    def gateway(handler: _Node) -> None:
        handler.send_response(502)
        handler.send_header("Content-Type", "text/html")
        handler.send_header("Content-Length", "23")
        handler.end_headers()
        handler.wfile.write(b"<h1>502 Bad Gateway</h1>"[:23])

    url, _seen = stand_in_node(gateway)
    done = rx("results", "list", RX_URL=url, RX_RETRIES="0")
    assert (done.returncode, done.stderr) == (2, "rx: HTTP 502 Bad Gateway\n")


def test_a_download_stops_at_the_listed_size_whatever_the_node_sends(stand_in_node, tmp_path):
    wanted = b"w" * 1000
    sha256 = hashlib.sha256(wanted).hexdigest()
    sent_mib = []
    finished = threading.Event()

    def endless(handler: _Node) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.end_headers()  # no length: the body runs until the connection closes
        handler.close_connection = True
        try:
            for _ in range(512):
                handler.wfile.write(b"x" * 1024 * 1024)
                sent_mib.append(1)
        except OSError:
            pass  # the client hung up
        finally:
            finished.set()

    url, _seen = stand_in_node(endless)
    target = tmp_path / "model.safetensors"
    with Client(url, "rx_token", retries=0) as client, pytest.raises(RxError) as refused:
        download_artifact(client, sha256=sha256, size=len(wanted), target=target)
    assert str(refused.value) == (
        "model.safetensors: the node sent more than the 1000 bytes it lists; the file was removed"
    )
    assert not target.exists() and not target.with_name("model.safetensors.part").exists()
    # The client hung up at once: what the node got out is what the sockets' buffers held.
    assert finished.wait(timeout=30) and len(sent_mib) < 64


@pytest.mark.parametrize(
    "filename", ["../../.bashrc", "/home/user/.profile", "sub/model.bin", ".."]
)
def test_a_file_the_node_names_outside_the_folder_is_refused(stand_in_node, tmp_path, filename):
    content = b"echo owned\n"
    sha256 = hashlib.sha256(content).hexdigest()

    def node(handler: _Node) -> None:
        path = handler.path.split("?")[0]
        if path == "/api/v1/models/":
            row = {"id": 1, "slug": "m", "institution": "evil"}
            _json_answer(handler, 200, {"results": [row], "next": None})
        elif path == "/api/v1/models/1/":
            _json_answer(handler, 200, {"id": 1, "latest_version": "1.0", "versions": []})
        elif path == "/api/v1/models/1/versions/1.0/":
            artifact = {"sha256": sha256, "size": len(content)}
            _json_answer(handler, 200, {"files": [{"filename": filename, "artifact": artifact}]})
        else:
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(content)))
            handler.end_headers()
            handler.wfile.write(content)

    url, seen = stand_in_node(node)
    dest = tmp_path / "home" / "models"
    with Client(url, "rx_token") as client, pytest.raises(RxError) as refused:
        download_version(client, ModelReference.parse("evil/m"), dest)
    assert "not a plain name" in str(refused.value)
    assert not any("/download" in path for _method, path, _headers in seen)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_a_resumed_download_the_node_answers_whole_starts_over(stand_in_node, tmp_path):
    content = bytes(range(256)) * 400
    sha256 = hashlib.sha256(content).hexdigest()

    def ignores_ranges(handler: _Node) -> None:
        handler.send_response(200)  # the whole file, whatever the Range asked
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)

    url, seen = stand_in_node(ignores_ranges)
    target = tmp_path / "model.bin"
    target.with_name("model.bin.part").write_bytes(content[:1000])
    with Client(url, "rx_token") as client:
        outcome = download_artifact(client, sha256=sha256, size=len(content), target=target)
    assert outcome == "resumed" and target.read_bytes() == content
    assert seen[0][2]["Range"] == "bytes=1000-" and seen[0][2]["If-Range"] == f'"{sha256}"'
    assert not target.with_name("model.bin.part").exists()


def test_the_token_does_not_follow_a_redirect_to_another_node(stand_in_node):
    other_url, other_seen = stand_in_node(lambda handler: _json_answer(handler, 200, {}))
    elsewhere = other_url.replace("127.0.0.1", "localhost")

    def redirects(handler: _Node) -> None:
        handler.send_response(302)
        handler.send_header("Location", f"{elsewhere}/api/v1/me/")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    url, seen = stand_in_node(redirects)
    with Client(url, "rx_secret") as client:
        client.me()
    assert seen[0][2]["Authorization"] == "Bearer rx_secret"
    assert len(other_seen) == 1 and "Authorization" not in other_seen[0][2]


def test_waiting_says_the_queue_again_only_when_the_place_or_start_moves(stand_in_node):
    # A job behind a run past its typical time is estimated to start "now" at every poll.
    polls = []

    def node(handler: _Node) -> None:
        polls.append(1)
        start = datetime.now(UTC).isoformat()
        queue = {"position": 1, "pending": 1, "estimated_start": start, "explanation": "..."}
        if len(polls) == 8:
            queue = {**queue, "position": 2, "pending": 2}
        state = "succeeded" if len(polls) > 10 else "pending"
        _json_answer(handler, 200, {"id": 7, "state": state, "attempt": 0, "queue": queue})

    url, _seen = stand_in_node(node)
    said = []
    with Client(url, "rx_token") as client:
        job = follow(client, 7, poll_seconds=0.01, on_queue=lambda job, queue: said.append(queue))
    assert job["state"] == "succeeded"
    # The first poll, the move to position 2 and back, and a minute that may turn meanwhile.
    assert 3 <= len(said) <= 4, said


def test_an_address_on_another_host_is_refused_before_the_token_goes_there(stand_in_node):
    # E.g. a page's `next` link, built by the node from a Host header it was sent.
    other_url, other_seen = stand_in_node(lambda handler: _json_answer(handler, 200, {}))
    url, seen = stand_in_node(lambda handler: _json_answer(handler, 200, {"results": []}))
    with Client(url, "rx_secret") as client:
        assert client.get(f"{url}/api/v1/models/?page=2") == {"results": []}
        with pytest.raises(RxError) as refused:
            client.get(f"{other_url}/api/v1/models/?page=2")
    assert str(refused.value) == (
        f"{other_url}/api/v1/models/?page=2 is not on {url}: the token goes to its node only"
    )
    assert other_seen == [] and len(seen) == 1


def test_the_token_is_sent_even_where_a_netrc_names_the_node(stand_in_node, tmp_path, monkeypatch):
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1\nlogin someone\npassword for-another-service\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    url, seen = stand_in_node(lambda handler: _json_answer(handler, 200, {"username": "ada"}))
    with Client(url, "rx_secret") as client:
        client.me()
    assert seen[0][2]["Authorization"] == "Bearer rx_secret"


def test_an_answer_rx_does_not_understand_exits_2_not_1_like_a_failed_evaluation(rx, stand_in_node):
    url, _seen = stand_in_node(lambda handler: _json_answer(handler, 200, {"id": 1}))
    done = rx("eval", "wait", "1", RX_URL=url)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"rx: {url} gave an answer rx does not understand (KeyError: 'state'); "
        "is it a research-exchange node of a version rx knows?"
    )
