"""Where the command line finds its node and token: RX_URL / RX_TOKEN, else the credentials
file that `rx login` writes ($XDG_CONFIG_HOME/research-exchange/credentials.json, by default
under ~/.config), readable by its owner only."""

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class Credentials:
    url: str
    token: str | None
    # Where each came from, to say so: "RX_URL", "RX_TOKEN", the file's path or "default".
    url_source: str
    token_source: str | None


def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "research-exchange" / "credentials.json"


def _tighten(path: Path) -> None:
    """A file copied or restored with a looser mode is made its owner's alone again (where
    this user may: a read-only mount is left as it is)."""
    if path.stat().st_mode & 0o077:
        with contextlib.suppress(OSError):
            path.chmod(0o600)


def read_file() -> dict[str, str]:
    path = credentials_path()
    try:
        _tighten(path)
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise OSError(f"cannot read {path}: {error}; run rx login again") from error
    return {key: str(value) for key, value in data.items() if key in ("url", "token")}


def current() -> Credentials:
    stored = read_file()
    path = str(credentials_path())
    url, url_source = DEFAULT_URL, "default"
    if os.environ.get("RX_URL"):
        url, url_source = os.environ["RX_URL"], "RX_URL"
    elif stored.get("url"):
        url, url_source = stored["url"], path
    url = url.rstrip("/")
    token, token_source = None, None
    if os.environ.get("RX_TOKEN"):
        token, token_source = os.environ["RX_TOKEN"], "RX_TOKEN"
    elif stored.get("token") and stored.get("url", "").rstrip("/") == url:
        # A saved token goes only to the node it was saved for, never to another RX_URL.
        token, token_source = stored["token"], path
    return Credentials(url, token, url_source, token_source)


def save(url: str, token: str) -> Path:
    """Writes the file as its owner's alone (0600, in a 0700 folder), replacing it whole."""
    path = credentials_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    # mkstemp: a new name each time (0600, O_EXCL), whatever an interrupted run left behind.
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "w") as file:
            json.dump({"url": url.rstrip("/"), "token": token}, file, indent=2)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def remove() -> bool:
    path = credentials_path()
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
