"""The repository layout promises that every entry point depends on."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_platform_folder_is_not_a_package():
    assert (REPO / "platform" / "config" / "__init__.py").exists()
    assert not (REPO / "platform" / "__init__.py").exists()
    assert not list((REPO / "platform").glob("*.py")), "no module may sit directly in platform/"


def test_import_platform_is_the_standard_library_module():
    import platform

    assert Path(platform.__file__).parent == Path(sysconfig.get_paths()["stdlib"])
    assert platform.system() == "Linux"


def test_libraries_that_import_platform_work_from_the_repository_root():
    code = (
        "import platform, uuid, celery.platforms, kombu, redis, config;"
        "print(platform.system(), uuid.uuid4().version, config.celery_app.main)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'platform'}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Linux", "4", "research_exchange"]


def test_manage_py_finds_the_project_package_without_pythonpath():
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
