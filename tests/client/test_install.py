"""The client installs on its own, as an integrator installs it: `pip install ./client` into a
fresh virtual environment brings the `rx` command and its two pinned dependencies, and no
Django."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.timeout(300)

EXPECTED = {
    "research-exchange-client": "0.1.0",
    "requests": "2.34.2",
    "tqdm": "4.70.1",
}
# What requests itself brings.
ALLOWED_EXTRA = {"certifi", "charset-normalizer", "idna", "urllib3"}


def test_pip_install_client_gives_rx_and_no_django(tmp_path):
    source = tmp_path / "client"
    shutil.copytree(
        REPO / "client",
        source,
        ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"),
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    # The test environment's pip installs into the new one (which then has no pip of its own).
    install = subprocess.run(
        [
            sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
            "--disable-pip-version-check", str(source),
        ],
        capture_output=True, text=True, env=env, timeout=240,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr

    helped = subprocess.run(
        [venv / "bin" / "rx", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert helped.returncode == 0, helped.stderr
    assert "login" in helped.stdout and "leaderboard" in helped.stdout
    assert "Exit codes: 0 done or evaluation succeeded" in " ".join(helped.stdout.split())

    listed = subprocess.run(
        [
            python, "-c",
            "import importlib.metadata as m, json;"
            "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))",
        ],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    installed = json.loads(listed.stdout)
    for name, version in EXPECTED.items():
        assert installed.pop(name) == version
    assert set(installed) <= ALLOWED_EXTRA, installed

    django = subprocess.run(
        [python, "-c", "import django"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert django.returncode == 1 and "No module named 'django'" in django.stderr
