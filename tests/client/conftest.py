"""The `rx` command line run as its users run it: a separate process with RX_URL / RX_TOKEN (or
its saved login) against a live node, with a home folder of its own."""

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.compute.conftest import make_benchmark  # noqa: F401 - shared fixture
from tests.factories import api_token_for

# `rx` with Ctrl-C (SIGINT) handled as in a terminal, even where the suite itself runs as a
# background job without job control, whose children start with SIGINT ignored.
CTRL_C_AS_IN_A_TERMINAL = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('rx_client', run_name='__main__', alter_sys=True)"
)


@dataclass
class Rx:
    """Runs `python -m rx_client ARGS` with the environment a user's shell would give it."""

    env: dict[str, str]
    home: Path

    def __call__(
        self, *args: str, stdin: str = "", timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "rx_client", *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=self.home,
            env={**self.env, **env},
            timeout=timeout,
        )

    def popen(self, *args: str, **env: str) -> tuple[subprocess.Popen, Path, Path]:
        """Starts `rx ARGS` in the background: (process, its stdout file, its stderr file)."""
        stdout, stderr = self.home / "rx.stdout", self.home / "rx.stderr"
        with stdout.open("w") as out, stderr.open("w") as err:
            process = subprocess.Popen(
                [sys.executable, "-c", CTRL_C_AS_IN_A_TERMINAL, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=self.home,
                env={**self.env, **env},
            )
        return process, stdout, stderr


def user_environment(home: Path) -> dict[str, str]:
    """The test's environment less the node's own settings and any RX_ variables."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RX_", "DJANGO_", "DATABASE_", "CELERY_", "XDG_"))
    }
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    return env


@pytest.fixture
def member_token(member) -> str:
    return api_token_for(member)


@pytest.fixture
def rx(live_server, member_token, tmp_path) -> Rx:
    """The command line of the institution's member, with RX_URL and RX_TOKEN set."""
    home = tmp_path / "home"
    home.mkdir()
    env = user_environment(home)
    env.update(RX_URL=live_server.url, RX_TOKEN=member_token, RX_RETRIES="1")
    return Rx(env, home)


@pytest.fixture
def rx_logged_out(live_server, tmp_path) -> Rx:
    """The command line with neither RX_ variables nor a saved login."""
    home = tmp_path / "fresh-home"
    home.mkdir()
    return Rx(user_environment(home), home)
