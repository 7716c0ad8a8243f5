"""docker-compose.yml cannot run on this machine; these checks keep it pointing at real code."""

import importlib.util
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_runs_every_part_of_a_node_with_healthchecks():
    services = COMPOSE["services"]
    assert {"postgres", "redis", "migrate", "web", "control", "beat"} <= set(services)
    for name in ["postgres", "redis", "web", "control"]:
        assert services[name]["healthcheck"]["test"], name
    assert services["web"]["environment"]["DJANGO_SETTINGS_MODULE"] == "config.settings.production"


def test_compose_commands_name_modules_that_exist():
    services = COMPOSE["services"]
    wsgi_module, wsgi_attribute = services["web"]["command"][-1].split(":")
    assert wsgi_module == "config.wsgi" and wsgi_attribute == "application"
    assert importlib.util.find_spec(wsgi_module) is not None
    for name in ["control", "beat"]:
        command = services[name]["command"]
        assert command[:3] == ["celery", "-A", "config"]
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]


def test_compose_sends_the_web_healthcheck_to_the_health_endpoint():
    probe = " ".join(COMPOSE["services"]["web"]["healthcheck"]["test"])
    assert "/healthz" in probe


def test_compose_runs_the_gpu_worker_on_request_with_its_three_settings():
    worker = COMPOSE["services"]["gpu-worker"]
    assert worker["profiles"] == ["gpu"]  # a plain `docker compose up` does not need a token
    assert worker["command"][:4] == ["python", "-m", "worker", "run"]
    assert importlib.util.find_spec("worker.consumer") is not None
    assert set(worker["environment"]) == {
        "WORKER_BROKER_URL",
        "WORKER_NODE_URL",
        "WORKER_NODE_TOKEN",
    }


def test_the_gpu_worker_image_installs_the_gpu_evaluators():
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    build_extras = COMPOSE["services"]["gpu-worker"]["build"]["args"]["EXTRAS"]
    assert build_extras == "[evaluators-gpu]"
    assert any(pin.startswith("onnxruntime-gpu==") for pin in extras["evaluators-gpu"])
    assert 'pip install --no-cache-dir ".${EXTRAS}"' in (REPO / "Dockerfile").read_text()
