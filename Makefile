# The two commands of this repository:
#   make run    the platform on this machine (SQLite + filesystem broker unless DATABASE_URL /
#               CELERY_BROKER_URL name PostgreSQL and Redis), with demo data; Ctrl-C stops it all
#   make test   lint, format check, type check, import contracts, migration check and the whole
#               test suite against the real PostgreSQL and Redis (DATABASE_URL / REDIS_URL
#               override the local defaults)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WEB_PORT ?= 8000
export PYTHONPATH := platform
export WEB_PORT

.PHONY: run test lint install clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_seed
	@echo "Portal: http://127.0.0.1:$(WEB_PORT)/   API docs: http://127.0.0.1:$(WEB_PORT)/api/docs/   (Ctrl-C stops everything)"
	$(VENV)/bin/honcho --procfile Procfile --app-root . start

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	DATABASE_URL=sqlite:///:memory: $(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) var
