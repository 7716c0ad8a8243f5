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
# The demo's second node, peered with the first: its own var dir (SQLite database, keys,
# files), port and name.
PLATFORM_VAR_DIR ?= var
PEER_VAR_DIR ?= $(PLATFORM_VAR_DIR)/peer-node
PEER_WEB_PORT ?= $(shell echo $$(($(WEB_PORT) + 1)))
FEDERATION_NODE_URL ?= http://127.0.0.1:$(WEB_PORT)
export PYTHONPATH := platform
export WEB_PORT
# Only the run command's processes get these: exported for every target, they would reach
# the test suite's own `make run` from `make test` and point it at the wrong node and folder.
run: export PEER_WEB_PORT := $(PEER_WEB_PORT)
run: export PEER_VAR_DIR := $(PEER_VAR_DIR)
run: export FEDERATION_NODE_URL := $(FEDERATION_NODE_URL)

.PHONY: run test lint install clean

$(VENV)/.installed: pyproject.toml client/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(PY) -m pip install --quiet --disable-pip-version-check -e ./client
	touch $@

install: $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_seed
	mkdir -p $(PEER_VAR_DIR)
	printf '%s\n' "PLATFORM_VAR_DIR=$(PEER_VAR_DIR)" \
		"DATABASE_URL=sqlite:///$(abspath $(PEER_VAR_DIR))/db.sqlite3" \
		"CELERY_BROKER_URL=filesystem://" "CACHE_URL=locmemcache://" \
		"FEDERATION_NODE_URL=http://127.0.0.1:$(PEER_WEB_PORT)" "WEB_PORT=$(PEER_WEB_PORT)" \
		"NODE_NAME='Kestrel Bay Research Exchange'" > $(PEER_VAR_DIR)/node.env
	set -a; . $(PEER_VAR_DIR)/node.env; set +a; $(PY) manage.py migrate --noinput \
		&& $(PY) manage.py demo_seed --peer-node
	@echo "Second node (peered): http://127.0.0.1:$(PEER_WEB_PORT)/"
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
