"""A real HTTP receiver on 127.0.0.1 that checks every webhook it gets with the
`standardwebhooks` package (the reference implementation), as an integrator would, and keeps
what came: the raw body, the headers, whether the signature held."""

import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from apps.events import webhooks
from apps.events.models import WebhookEndpoint


@dataclass
class Received:
    path: str
    body: bytes
    headers: dict[str, str]
    verified: bool
    error: str
    payload: Any
    answered: int


@dataclass
class Receiver:
    """POSTs to /hooks/<name> are checked with the secret given for <name> and answered with
    the status codes scripted for it, then 200."""

    port: int = 0
    secrets: dict[str, str] = field(default_factory=dict)
    answers: dict[str, list[int]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    base: str = "http://127.0.0.1"

    def url(self, name: str) -> str:
        return f"{self.base}:{self.port}/hooks/{name}"

    def expect(self, name: str, secret: str, answers: list[int] | None = None) -> str:
        with self.lock:
            self.secrets[name] = secret
            self.answers[name] = list(answers or [])
        return self.url(name)

    def reset(self) -> None:
        with self.lock:
            self.secrets.clear()
            self.answers.clear()
            self.received.clear()

    def got(self, name: str) -> list[Received]:
        with self.lock:
            return [item for item in self.received if item.path == f"/hooks/{name}"]

    def handle(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        name = path.rsplit("/", 1)[-1]
        with self.lock:
            secret = self.secrets.get(name)
            scripted = self.answers.get(name) or []
            status = scripted.pop(0) if scripted else 200
        verified, error, payload = False, "no secret for this path", None
        if secret is not None:
            try:
                payload = Webhook(secret).verify(body, headers)
                verified, error = True, ""
            except WebhookVerificationError as failure:
                error = str(failure)
        with self.lock:
            self.received.append(
                Received(path, body, dict(headers), verified, error, payload, status)
            )
        return status


def start_receiver(tls: ssl.SSLContext | None = None) -> tuple[Receiver, ThreadingHTTPServer]:
    """The receiver in a thread; with `tls`, it speaks https."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            status = receiver.handle(self.path, body, {k: v for k, v in self.headers.items()})
            answer = b"ok" if status < 300 else b"receiver error"
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    receiver.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server


def endpoint_for(owner, receiver: Receiver, name: str, *, answers=None, institution=None, **fields):
    """An endpoint on the loopback receiver: staff allowed private addresses for it (as in
    the admin), which the owner alone cannot."""
    endpoint = WebhookEndpoint.objects.create(
        user=None if institution else owner,
        institution=institution,
        created_by=owner,
        url=receiver.url(name),
        secret=webhooks._new_secret(),
        allow_private_addresses=True,
        **fields,
    )
    receiver.expect(name, endpoint.secret, answers)
    return endpoint
