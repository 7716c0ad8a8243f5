"""Sessions for calls to a URL someone else names (a webhook's owner, a node asking to peer):
the connection goes to an address checked beforehand (apps.core.addresses), with the URL's host
in the Host header and, for https, in the TLS server name and certificate check; and the whole
call ends at a deadline, however slowly the other side sends (read time-outs alone bound each
read, not their sum)."""

import contextlib
import socket
import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from apps.core.addresses import IPAddress


class Deadline:
    """Shuts every socket of one call once its time is up: a blocked read then returns at
    once. `expired` says whether it did."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


class _DeadlineAdapter(HTTPAdapter):
    """Every connection it opens is shut at the deadline; for https to an address, the
    certificate is still checked for the URL's host name."""

    def __init__(self, deadline: Deadline, hostname: str = "") -> None:
        self._deadline = deadline
        self._hostname = hostname
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._hostname:
            kwargs["server_hostname"] = self._hostname
            kwargs["assert_hostname"] = self._hostname
        super().init_poolmanager(*args, **kwargs)
        deadline = self._deadline

        class Plain(HTTPConnection):
            def _new_conn(self) -> socket.socket:
                sock = super()._new_conn()
                deadline.track(sock)
                return sock

        class Secure(HTTPSConnection):
            def _new_conn(self) -> socket.socket:
                sock = super()._new_conn()
                deadline.track(sock)
                return sock

        class PlainPool(HTTPConnectionPool):
            ConnectionCls = Plain

        class SecurePool(HTTPSConnectionPool):
            ConnectionCls = Secure

        self.poolmanager.pool_classes_by_scheme = {"http": PlainPool, "https": SecurePool}


def pinned_target(url: str, ip: IPAddress) -> tuple[str, str]:
    """(the URL with `ip` for its host, the Host header the URL names)."""
    parts = urlsplit(url)
    literal = f"[{ip}]" if ip.version == 6 else str(ip)
    netloc = literal + (f":{parts.port}" if parts.port else "")
    target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    return target, parts.netloc.rsplit("@", 1)[-1]


def pinned_session(url: str, deadline: Deadline) -> requests.Session:
    """A session for one call to `url` sent to a checked address (pinned_target): no proxy
    from the environment (it would resolve the name again), the deadline on every connection,
    and for https the certificate checked for the URL's host."""
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", _DeadlineAdapter(deadline))
    session.mount("https://", _DeadlineAdapter(deadline, urlsplit(url).hostname or ""))
    return session
