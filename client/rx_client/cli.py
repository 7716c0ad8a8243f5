"""`rx`: the command line of a research-exchange node, for integrators.

Exit codes: 0 done (an evaluation that succeeded), 1 an evaluation that failed (or a download
whose sha256 did not match, BibTeX entries refused), 2 usage errors and errors of the API or the
connection, 3 an evaluation cancelled, 4 an evaluation timed out, 130 interrupted (Ctrl-C).
"""

import argparse
import getpass
import ipaddress
import os
import sys
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from rx_client import __version__, commands, config
from rx_client.errors import ApiError, ChecksumMismatch, NodeUnreachable, RxError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def error(message: str) -> None:
    print(f"rx: {message}", file=sys.stderr)


def login(args: argparse.Namespace) -> int:
    current = config.current()
    url = (args.url or current.url).rstrip("/")
    if sys.stdin.isatty():
        token = getpass.getpass(
            f"Personal API token for {url} (create one at {url}/account/tokens/): "
        )
    else:
        token = sys.stdin.readline()
    token = token.strip()
    if not token:
        error("no token given")
        return EXIT_USAGE
    if _in_clear(url):
        error(f"warning: {url} is plain http, so the token travels unencrypted; prefer https")
    with commands.make_client(url, token) as client:
        try:
            me = client.me()
        except ApiError as refusal:
            if refusal.status != 401:
                raise
            error(f"the token was refused ({refusal.message}); nothing was saved")
            return EXIT_USAGE
    path = config.save(url, token)
    print(f"Logged in to {url} as {me['username']}; the token is saved in {path}")
    if os.environ.get("RX_TOKEN") or os.environ.get("RX_URL"):
        print("Note: RX_URL / RX_TOKEN are set and take precedence over the saved login.")
    return 0


def _in_clear(url: str) -> bool:
    """Whether the token would cross a network unencrypted (http to another host)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http" or host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def logout(args: argparse.Namespace) -> int:
    path = config.credentials_path()
    if config.remove():
        print(f"Removed {path}")
    else:
        print(f"Not logged in ({path} does not exist)")
    if os.environ.get("RX_TOKEN"):
        print("Note: RX_TOKEN is still set in this environment.")
    return 0


def whoami(args: argparse.Namespace) -> int:
    current = config.current()
    if not current.token:
        error("not logged in: run rx login (or set RX_URL and RX_TOKEN)")
        return EXIT_USAGE
    with commands.make_client() as client:
        me = client.me()
    if args.json:
        commands.as_json({"url": client.url, **me})
        return 0
    name = me.get("display_name") or me["username"]
    print(f"{me['username']} ({name}) at {client.url}" + (" [staff]" if me["is_staff"] else ""))
    for membership in me.get("memberships", []):
        print(f"  {membership['institution']}: {membership['role']}")
    print(f"token from {current.token_source}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rx",
        description="Publish models and papers, run evaluations and read results on a "
        "research-exchange node. The node and token come from RX_URL and RX_TOKEN, else from "
        "`rx login`.",
        epilog="Exit codes: 0 done or evaluation succeeded, 1 evaluation failed, 2 usage or API "
        "error, 3 evaluation cancelled, 4 evaluation timed out, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"rx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("login", help="save a personal API token for a node")
    p.add_argument("--url", help=f"the node's address (default: RX_URL or {config.DEFAULT_URL})")
    p.set_defaults(func=login)
    sub.add_parser("logout", help="forget the saved token").set_defaults(func=logout)
    p = sub.add_parser("whoami", help="who the token belongs to")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=whoami)

    commands.add_models(sub)
    commands.add_papers(sub)
    commands.add_eval(sub)
    commands.add_results(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ApiError as refusal:
        if refusal.status == 401:
            source = config.current().token_source
            where = "the token in RX_TOKEN" if source == "RX_TOKEN" else "the token"
            if source is None:
                error(f"not logged in ({refusal.message}): run rx login")
            else:
                error(f"{where} was refused ({refusal.message}): run rx login")
        elif refusal.code == "http_error":  # no error body: the message is the status
            error(refusal.message)
        else:
            error(f"{refusal.message} (HTTP {refusal.status})")
        return EXIT_USAGE
    except NodeUnreachable as unreachable:
        error(str(unreachable))
        return EXIT_USAGE
    except ChecksumMismatch as mismatch:
        error(str(mismatch))
        return 1
    except (RxError, OSError) as failure:
        error(str(failure))
        return EXIT_USAGE
    except (KeyError, TypeError, ValueError, IndexError) as confusion:
        # An answer of another shape (another service, another version): never exit 1, which
        # says that an evaluation failed.
        reason = f"{type(confusion).__name__}: {confusion}"
        error(
            f"{config.current().url} gave an answer rx does not understand ({reason}); "
            "is it a research-exchange node of a version rx knows?"
        )
        return EXIT_USAGE
    except KeyboardInterrupt:
        error("interrupted")
        return EXIT_INTERRUPTED
