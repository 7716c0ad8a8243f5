"""The worker's node client and file cache against a small local HTTP server standing in for the
node: downloads are verified before they land, failures are retried, refusals explained."""

import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from worker.file_cache import FileCache
from worker.node_client import (
    DownloadError,
    NodeClient,
    NodeError,
    NodeUnavailable,
    StaleAttempt,
)
from worker.settings import WorkerSettings

TOKEN = "rxn_test-token"


class FakeNode:
    """Answers each path with a queue of (status, body) replies; the last one repeats."""

    def __init__(self) -> None:
        self.replies: dict[str, list[tuple[int, bytes]]] = {}
        self.requests: list[dict] = []
        node = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                node.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "authorization": self.headers.get("Authorization"),
                        "json": json.loads(body) if body else None,
                    }
                )
                queue = node.replies.get(self.path, [(404, b'{"error":{"message":"nope"}}')])
                status, content = queue.pop(0) if len(queue) > 1 else queue[0]
                self.send_response(status)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = _reply

            def log_message(self, format, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, path: str, *replies: tuple[int, object]) -> None:
        self.replies[path] = [
            (status, body if isinstance(body, bytes) else json.dumps(body).encode())
            for status, body in replies
        ]

    def calls(self, path: str) -> list[dict]:
        return [request for request in self.requests if request["path"] == path]


@pytest.fixture
def node():
    fake = FakeNode()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def client(node):
    settings = WorkerSettings(
        broker_url="redis://127.0.0.1:1/0", node_url=node.url, node_token=TOKEN
    )
    client = NodeClient(settings, retries=3, backoff_seconds=0.01)
    yield client
    client.close()


def sha256_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def error(message: str, status: int = 400) -> dict:
    return {"error": {"status": status, "code": "invalid", "message": message, "fields": {}}}


CONTENT = os.urandom(300_000)
FILE_PATH = f"/api/v1/worker/jobs/7/files/{sha256_of(CONTENT)}"


def test_download_lands_a_verified_file_and_sends_the_node_token(node, client, tmp_path):
    node.answer(FILE_PATH, (200, CONTENT))
    dest = tmp_path / "files" / "weights.safetensors"

    path = client.download(FILE_PATH, dest, sha256_of(CONTENT), size=len(CONTENT))

    assert path.read_bytes() == CONTENT
    assert sorted(p.name for p in dest.parent.iterdir()) == ["weights.safetensors"]
    assert node.calls(FILE_PATH)[0]["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("announced_sha256", "announced_size", "expected"),
    [
        ("0" * 64, len(CONTENT), "sha256"),
        (sha256_of(CONTENT), len(CONTENT) - 1, "more than the announced"),
        (sha256_of(CONTENT), len(CONTENT) + 1, "received 300000 bytes"),
    ],
)
def test_a_file_that_differs_from_its_announcement_is_refused_and_leaves_nothing(
    node, client, tmp_path, announced_sha256, announced_size, expected
):
    node.answer(FILE_PATH, (200, CONTENT))
    dest = tmp_path / "weights.safetensors"

    with pytest.raises(DownloadError, match=expected):
        client.download(FILE_PATH, dest, announced_sha256, size=announced_size)

    assert list(tmp_path.iterdir()) == []


def test_server_errors_are_retried_until_the_node_answers(node, client):
    node.answer(
        "/api/v1/worker/heartbeat",
        (503, b"busy"),
        (502, b"bad gateway"),
        (200, {"stop": [], "heartbeat_seconds": 15, "lease_seconds": 60}),
    )

    reply = client.heartbeat([{"job": 1, "attempt": 1}])

    assert reply["heartbeat_seconds"] == 15
    calls = node.calls("/api/v1/worker/heartbeat")
    assert len(calls) == 3
    assert all(call["json"] == {"running": [{"job": 1, "attempt": 1}]} for call in calls)


def test_a_node_that_keeps_failing_is_reported_unavailable_after_the_retries(node, client):
    node.answer("/api/v1/worker/heartbeat", (500, b"down"))

    with pytest.raises(NodeUnavailable, match="500"):
        client.heartbeat([])

    assert len(node.calls("/api/v1/worker/heartbeat")) == 4


def test_a_node_that_does_not_answer_is_reported_unavailable():
    settings = WorkerSettings(
        broker_url="redis://127.0.0.1:1/0", node_url="http://127.0.0.1:1", node_token=TOKEN
    )
    with pytest.raises(NodeUnavailable, match="ConnectionError"):
        NodeClient(settings, retries=1, backoff_seconds=0.01).heartbeat([])


def test_a_refusal_is_not_retried_and_carries_the_nodes_message(node, client):
    node.answer("/api/v1/worker/jobs/3/logs", (400, error("offset: The log has 12 characters")))

    with pytest.raises(NodeError, match="The log has 12 characters") as refusal:
        client.append_log(3, 1, 40, "more output\n")

    assert refusal.value.status == 400
    assert len(node.calls("/api/v1/worker/jobs/3/logs")) == 1


def test_a_stale_attempt_is_not_claimed_and_its_outcome_is_refused(node, client):
    stale = error("Attempt 1 of job 5 was superseded by attempt 2.", 409)
    node.answer("/api/v1/worker/jobs/5/claim", (409, stale))
    node.answer("/api/v1/worker/jobs/5/result", (409, stale))

    assert client.claim(5, 1) is None
    with pytest.raises(StaleAttempt, match="superseded"):
        client.post_result(5, 1, {"files": 1}, {})


def test_log_pieces_and_outcomes_are_sent_with_their_attempt(node, client):
    node.answer("/api/v1/worker/jobs/4/logs", (200, {"length": 18}))
    node.answer("/api/v1/worker/jobs/4/status", (200, {"state": "failed"}))

    assert client.append_log(4, 2, 6, "hello\nworld\n") == 18
    client.report_failure(4, 2, "failed", "evaluator x is not installed on this worker")

    assert node.calls("/api/v1/worker/jobs/4/logs")[0]["json"] == {
        "attempt": 2, "offset": 6, "text": "hello\nworld\n"
    }  # fmt: skip
    assert node.calls("/api/v1/worker/jobs/4/status")[0]["json"] == {
        "attempt": 2, "state": "failed", "reason": "evaluator x is not installed on this worker"
    }  # fmt: skip


def test_the_node_token_never_goes_to_another_host(client, tmp_path):
    with pytest.raises(NodeError, match="Refusing to send the node token"):
        client.download("http://example.org/x", tmp_path / "x", "0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_the_cache_downloads_a_digest_once(node, client, tmp_path):
    node.answer(FILE_PATH, (200, CONTENT))
    cache = FileCache(tmp_path / "cache", max_bytes=10 * len(CONTENT))
    digest = sha256_of(CONTENT)

    first = cache.fetch(client, url=FILE_PATH, sha256=digest, size=len(CONTENT))
    second = cache.fetch(client, url=FILE_PATH, sha256=digest, size=len(CONTENT))

    assert first == second and first.read_bytes() == CONTENT
    assert len(node.calls(FILE_PATH)) == 1


def test_the_cache_evicts_the_least_recently_used_files_but_not_those_in_use(
    node, client, tmp_path
):
    files = [bytes([n]) * 1000 for n in range(4)]
    for content in files:
        node.answer(f"/f/{sha256_of(content)}", (200, content))
    cache = FileCache(tmp_path / "cache", max_bytes=3000)

    def fetch(content: bytes):
        digest = sha256_of(content)
        return cache.fetch(client, url=f"/f/{digest}", sha256=digest, size=len(content))

    oldest, used_again, in_use = fetch(files[0]), fetch(files[1]), fetch(files[2])
    cache.release([sha256_of(files[0]), sha256_of(files[1])])
    os.utime(oldest, (2, 2))
    os.utime(used_again, (1, 1))
    os.utime(in_use, (0, 0))  # the oldest of all, but a running job holds it
    fetch(files[1])
    cache.release([sha256_of(files[1])])

    fetch(files[3])

    assert not oldest.exists()
    assert used_again.exists() and in_use.exists()
    assert cache.size() <= 3000


def test_the_cache_keeps_nothing_of_a_refused_download(node, client, tmp_path):
    node.answer(FILE_PATH, (200, CONTENT[:-1] + b"x"))
    cache = FileCache(tmp_path / "cache")

    with pytest.raises(DownloadError):
        cache.fetch(client, url=FILE_PATH, sha256=sha256_of(CONTENT), size=len(CONTENT))

    assert cache.size() == 0
    assert not any(path.is_file() for path in (tmp_path / "cache").rglob("*"))
