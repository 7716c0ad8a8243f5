"""The README's run command, as a new user runs it: embedded database and broker, demo data,
web server + control-plane worker + beat, all stopped by one Ctrl-C."""

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download

from tests.conftest import wait_for

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (honcho starts each of its processes in a session of its own,
    so process groups cannot find them)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def get(opener, url: str) -> tuple[int, str]:
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, response.read().decode()
    except OSError:
        return 0, ""


@pytest.fixture
def running_platform(tmp_path):
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "CACHE_URL"}
    }
    env.update(
        {
            "PLATFORM_VAR_DIR": str(tmp_path / "var"),
            "WEB_PORT": str(port),
            "PEER_WEB_PORT": str(free_port()),
        }
    )
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            ["make", "run"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield process, f"http://127.0.0.1:{port}", log_path, env
    finally:
        if process.poll() is None:
            for pid in descendants(process.pid):
                os.kill(pid, signal.SIGKILL)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def sign_in(base_url: str, username: str, password: str):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    get(opener, f"{base_url}/login/")
    cookies = {cookie.name: cookie.value for cookie in jar}
    form = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": cookies["csrftoken"]}
    ).encode()
    opener.open(urllib.request.Request(f"{base_url}/login/", data=form), timeout=10).close()
    return opener


def test_run_command_serves_the_demo_and_stops_on_ctrl_c(running_platform, tmp_path):
    process, base_url, log_path, env = running_platform
    cookie_jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookie_jar))

    deadline = time.monotonic() + 180
    while get(opener, f"{base_url}/healthz")[0] != 200:
        assert process.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.5)

    status, home = get(opener, f"{base_url}/")
    assert status == 200 and "Northbridge University" in home
    status, schema = get(opener, f"{base_url}/api/schema/")
    assert status == 200 and schema.startswith("openapi: 3")

    def log_has(text: str) -> bool:
        return text in log_path.read_text()

    while not (log_has("celery@") and log_has("beat: Starting")):
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.5)

    # A task sent from Django reaches the control worker through the embedded broker.
    send = "from apps.accounts.tasks import api_tokens_purge_stale; api_tokens_purge_stale.delay()"
    subprocess.run(
        [".venv/bin/python", "manage.py", "shell", "--no-imports", "-c", send],
        cwd=REPO, env=env, check=True, timeout=60,
    )  # fmt: skip
    assert wait_for(
        lambda: log_has("api_tokens_purge_stale") and log_has("succeeded"), timeout=30
    ), log_path.read_text()

    password = re.search(r"Staff admin:\s+admin / (\S+)", log_path.read_text()).group(1)
    get(opener, f"{base_url}/login/")
    cookies = {cookie.name: cookie.value for cookie in cookie_jar}
    form = urllib.parse.urlencode(
        {"username": "admin", "password": password, "csrfmiddlewaretoken": cookies["csrftoken"]}
    ).encode()
    with opener.open(urllib.request.Request(f"{base_url}/login/", data=form), timeout=10) as page:
        assert 'href="/admin/"' in page.read().decode()  # signed in as staff

    # A researcher submits an evaluation in the portal; the local CPU worker runs it.
    ids = subprocess.run(
        [
            ".venv/bin/python", "manage.py", "shell", "--no-imports", "-c",
            "from apps.catalog.models import Benchmark, ModelVersion; "
            "print(ModelVersion.objects.get(model__slug='tiny-encoder').pk, "
            "Benchmark.objects.get(slug='pool-check').pk, "
            "ModelVersion.objects.get(model__slug='tiny-encoder').model.institution_id)",
        ],
        cwd=REPO, env=env, check=True, timeout=60, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    researcher = sign_in(base_url, "ada", password)
    with researcher.open(f"{base_url}/compute/jobs/new/", timeout=10) as page:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.read().decode())
    form = urllib.parse.urlencode(
        {
            "model_version": ids[0],
            "benchmark": ids[1],
            "institution": ids[2],
            "csrfmiddlewaretoken": token.group(1),
        }
    ).encode()
    request = urllib.request.Request(f"{base_url}/compute/jobs/new/", data=form)
    with researcher.open(request, timeout=10) as page:
        job_url = page.geturl()
    assert re.search(r"/compute/jobs/\d+/$", job_url), job_url
    job_id = job_url.rstrip("/").rsplit("/", 1)[1]

    def job_state() -> str:
        status, body = get(researcher, f"{base_url}/api/v1/jobs/{job_id}/")
        return json.loads(body)["state"] if status == 200 else ""

    assert wait_for(lambda: job_state() == "succeeded", timeout=90), (
        job_state(),
        log_path.read_text(),
    )
    status, page = get(researcher, job_url)
    assert "Succeeded" in page and "files" in page

    # The researcher is told in the portal (the bell) that the job ended.
    def told() -> list[dict]:
        status, body = get(researcher, f"{base_url}/api/v1/notifications/?unread=true")
        return json.loads(body)["results"] if status == 200 else []

    assert wait_for(
        lambda: any(
            item["type"] == "job.succeeded" and item["url"] == f"/compute/jobs/{job_id}/"
            for item in told()
        ),
        timeout=30,
    ), told()

    # The Hugging Face client reads the node's public models, as the run command's output says.
    assert f"HF_ENDPOINT={base_url}" in log_path.read_text()
    hub_repo = "lakeshore-nlp/tiny-gpt2-random"
    info = HfApi(endpoint=base_url).model_info(hub_repo)
    files = {sibling.rfilename for sibling in info.siblings or []}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files, files
    config = hf_hub_download(hub_repo, "config.json", endpoint=base_url, cache_dir=tmp_path / "hf")
    assert json.loads(Path(config).read_text())["model_type"] == "gpt2"

    # The second node is peered with the first; each mirrors the other's public records.
    peer_url = f"http://127.0.0.1:{env['PEER_WEB_PORT']}"

    def mirrored(at: str, origin: str) -> list[str]:
        status, body = get(opener, f"{at}/api/v1/papers/?origin={origin}&page_size=100")
        return [paper["title"] for paper in json.loads(body)["results"]] if status == 200 else []

    assert wait_for(lambda: len(mirrored(base_url, peer_url)) == 2, timeout=90), (
        mirrored(base_url, peer_url),
        log_path.read_text()[-5000:],
    )
    assert wait_for(lambda: len(mirrored(peer_url, base_url)) >= 3, timeout=60)
    assert not any("Lab notebook" in title for title in mirrored(base_url, peer_url))
    status, page = get(opener, f"{base_url}/papers/?origin=peers")
    assert status == 200 and f"from {peer_url}" in page

    # The first node granted the second node's lab GPU-hours; the lab's researcher evaluates
    # their model on the first node's GPUs, and the signed result comes back to the second.
    token = (Path(env["PLATFORM_VAR_DIR"]) / "peer-node" / "demo-researcher.token").read_text()
    kiri = urllib.request.build_opener()
    kiri.addheaders = [("Authorization", f"Bearer {token.strip()}")]

    def remote_evaluation() -> dict:
        status, body = get(kiri, f"{peer_url}/api/v1/federation/remote-jobs/")
        results = json.loads(body)["results"] if status == 200 else []
        return results[0] if results else {}

    assert wait_for(lambda: remote_evaluation().get("state") == "succeeded", timeout=180), (
        remote_evaluation(),
        [line for line in log_path.read_text().splitlines() if "federation" in line][-30:],
    )
    result_id = remote_evaluation()["result"]
    status, body = get(kiri, f"{peer_url}/api/v1/results/{result_id}/")
    assert status == 200 and json.loads(body)["attestation_status"] == "verified"

    started = descendants(process.pid)
    assert len(started) >= 5, "expected make, honcho, web, control worker, beat, GPU worker"
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    process.wait(timeout=60)
    assert wait_for(lambda: not any(alive(pid) for pid in started), timeout=20), (
        f"left running: {[pid for pid in started if alive(pid)]}"
    )
