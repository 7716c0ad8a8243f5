"""Settings come from the environment; production refuses to start half-configured."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "SECRET_KEY": "k" * 20 + "a-long-random-production-secret-0123456789-abcdefghij",
    "ALLOWED_HOSTS": "node.example.org",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "ALLOWED_HOSTS"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_the_deployment_checklist():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = {key: value for key, value in PRODUCTION_ENV.items() if key != "SECRET_KEY"}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_local_settings_default_to_sqlite_and_the_filesystem_broker(tmp_path):
    code = (
        "from django.conf import settings;"
        "print(settings.DATABASES['default']['ENGINE']);"
        "print(settings.CELERY_BROKER_URL)"
    )
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        code,
        env={"DJANGO_SETTINGS_MODULE": "config.settings.local", "PLATFORM_VAR_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.sqlite3", "filesystem://"]
    assert (tmp_path / "broker" / "queue").is_dir()


def test_local_settings_use_postgresql_and_redis_when_their_urls_are_set(tmp_path):
    code = (
        "from django.conf import settings;"
        "print(settings.DATABASES['default']['ENGINE']);"
        "print(settings.CELERY_BROKER_URL)"
    )
    result = manage(
        "shell",
        "--no-imports",
        "-c",
        code,
        env={
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "PLATFORM_VAR_DIR": str(tmp_path),
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
            "CELERY_BROKER_URL": "redis://127.0.0.1:6379/3",
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql",
        "redis://127.0.0.1:6379/3",
    ]


def test_production_redirects_to_https_except_the_health_endpoint():
    code = (
        "from django.test import Client;"
        "c = Client(HTTP_HOST='node.example.org');"
        "print(c.get('/healthz').status_code, c.get('/').status_code, c.get('/')['Location'])"
    )
    result = manage("shell", "--no-imports", "-c", code, env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "301", "https://node.example.org/"]


def test_production_keeps_artifacts_locally_or_in_an_s3_bucket_when_named(tmp_path):
    code = (
        "from django.conf import settings;"
        "artifacts = settings.STORAGES['artifacts'];"
        "print(artifacts['BACKEND']);"
        "print(artifacts['OPTIONS'].get('bucket_name') or artifacts['OPTIONS']['location'])"
    )
    local = manage(
        "shell", "--no-imports", "-c", code, env={**PRODUCTION_ENV, "MEDIA_ROOT": str(tmp_path)}
    )
    s3 = manage(
        "shell", "--no-imports", "-c", code,
        env={**PRODUCTION_ENV, "ARTIFACT_S3_BUCKET": "node-artifacts"},
    )  # fmt: skip

    assert local.stdout.split() == [
        "django.core.files.storage.FileSystemStorage", str(tmp_path / "artifacts"),
    ]  # fmt: skip
    assert s3.stdout.split() == ["storages.backends.s3.S3Storage", "node-artifacts"]
