"""Peer keys and a stand-in peer node for signature and client tests: a real HTTP server on
127.0.0.1 (a thread) that serves a well-known document and answers signed, or misbehaves on
request (stalls, 5xx, 429, oversized or unsigned answers, redirects)."""

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from requests.structures import CaseInsensitiveDict

from apps.federation import httpsig
from apps.federation.contract import RESPONSE_COMPONENTS, WELL_KNOWN_PATH
from apps.federation.keys import key_id_for, public_key_text
from apps.federation.models import Peer, PeerKey


@dataclass
class KeyPair:
    private_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def public_text(self) -> str:
        return public_key_text(self.private_key)

    @property
    def key_id(self) -> str:
        return key_id_for(self.public_text)

    def published(self, **extra: Any) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "algorithm": "ed25519",
            "public_key": self.public_text,
            "status": "active",
            "valid_until": None,
            **extra,
        }


def make_peer(node_id: str, key: KeyPair, *, state: str = Peer.State.APPROVED) -> Peer:
    # Keys just pinned: an unknown key id is not looked up again at once.
    peer = Peer.objects.create(node_id=node_id, state=state, identity_fetched_at=datetime.now(UTC))
    PeerKey.objects.create(peer=peer, key_id=key.key_id, public_key=key.public_text)
    return peer


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class _Answer:
    status_code: int
    headers: CaseInsensitiveDict


class PeerServer:
    """`behaviours` is the script: each request takes the next one, the last one repeats."""

    def __init__(self, key: KeyPair):
        self.key = key
        self.behaviours: list[str] = ["ok"]
        self.seen: list[Seen] = []
        self.identity_keys: list[dict[str, Any]] = [key.published()]
        self.identity_node_id: str | None = None
        self.redirect_to = ""
        self.payload: Any = {"ok": True}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.dispatch(self)

            do_POST = do_GET

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def requests_to(self, path: str) -> list[Seen]:
        return [seen for seen in self.seen if seen.path.split("?")[0] == path]

    def identity(self) -> dict[str, Any]:
        return {"node_id": self.identity_node_id or self.url, "keys": self.identity_keys}

    def _next(self) -> str:
        with self._lock:
            return self.behaviours.pop(0) if len(self.behaviours) > 1 else self.behaviours[0]

    def dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        self.seen.append(Seen(handler.command, handler.path, dict(handler.headers.items()), body))
        if handler.path == WELL_KNOWN_PATH:
            self.send(handler, 200, json.dumps(self.identity()).encode(), {})
            return
        behaviour = self._next()
        nonce = ""
        with contextlib.suppress(httpsig.BadSignature):
            nonce = httpsig.read_signature(handler.headers).nonce or ""  # type: ignore[arg-type]
        payload = json.dumps(self.payload).encode()
        if behaviour == "ok":
            self.send_signed(handler, 200, payload, nonce=nonce)
        elif behaviour == "unsigned":
            self.send(handler, 200, payload, {})
        elif behaviour == "forged":
            self.send_signed(handler, 200, payload, nonce=nonce, signer=KeyPair())
        elif behaviour == "other-nonce":
            self.send_signed(handler, 200, payload, nonce=httpsig.new_nonce())
        elif behaviour == "tampered":
            self.send_signed(handler, 200, payload, nonce=nonce, replace_body=b'{"ok": false}')
        elif behaviour in ("500", "502", "503", "504"):
            self.send(handler, int(behaviour), b"busy", {})
        elif behaviour == "429":
            self.send(handler, 429, b"slow down", {"Retry-After": "0"})
        elif behaviour == "404":
            error = {"error": {"status": 404, "code": "not_found", "message": "No such thing."}}
            self.send(handler, 404, json.dumps(error).encode(), {})
        elif behaviour == "stall":
            time.sleep(1.0)
            self.send_signed(handler, 200, payload, nonce=nonce)
        elif behaviour == "huge":
            self.send(handler, 200, b"x" * 50_000, {})
        elif behaviour == "huge-undeclared":
            handler.send_response(200)
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(b"x" * 50_000)
        elif behaviour == "redirect":
            self.send(handler, 302, b"", {"Location": self.redirect_to})
        elif behaviour == "drop":
            handler.close_connection = True
        else:
            raise AssertionError(behaviour)

    def send(
        self, handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]
    ) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    def send_signed(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        *,
        nonce: str,
        signer: KeyPair | None = None,
        replace_body: bytes | None = None,
    ) -> None:
        answer = _Answer(status, CaseInsensitiveDict({httpsig.NONCE_HEADER: nonce}))
        httpsig.sign_message(
            answer,
            private_key=(signer or self.key).private_key,
            keyid=f"{self.url}#{self.key.key_id}",
            body=body,
            components=RESPONSE_COMPONENTS,
        )
        self.send(handler, status, replace_body or body, dict(answer.headers))


@contextmanager
def peer_server(key: KeyPair | None = None) -> Iterator[PeerServer]:
    server = PeerServer(key or KeyPair())
    thread = threading.Thread(target=server.httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
