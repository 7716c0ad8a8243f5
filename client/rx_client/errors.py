"""What a client call raises. Every message is written for the person who ran the call."""

from typing import Any


class RxError(Exception):
    """Anything that stops a client call."""


class ApiError(RxError):
    """The node answered with an error: `{"error": {"status", "code", "message", "fields"}}`."""

    def __init__(
        self,
        *,
        status: int,
        code: str,
        message: str,
        fields: dict[str, Any] | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.body = body

    def __str__(self) -> str:
        return self.message


class NodeUnreachable(RxError):
    """No answer from the node: refused, timed out or cut off, after the retries."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: is the node running? ({reason})")
        self.url = url
        self.reason = reason


class ChecksumMismatch(RxError):
    """A downloaded file's sha256 is not the one the node lists for it."""

    def __init__(self, filename: str, expected: str, actual: str) -> None:
        super().__init__(
            f"{filename}: its sha256 is {actual}, not the {expected} the node lists; "
            "the file was removed"
        )
        self.filename = filename
        self.expected = expected
        self.actual = actual
