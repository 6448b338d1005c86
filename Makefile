# Lockbox: `make run` to try it, `make test` to check it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
FLASK := $(BIN)/flask --app app

.PHONY: run test check lint format system-deps clean serve bench

run: $(VENV)/.installed .env
	$(FLASK) init-db
	$(FLASK) users bootstrap
	$(FLASK) run --host 127.0.0.1 --port 5000

# The app's modules, for the type checker.
MODULES := $(filter-out gunicorn.conf.py,$(wildcard *.py))
# What the tests need on the machine: Chromium, nginx, wrk, Galera... (apt),
# installed once; remove the stamp to look again.
TEST_SETUP := $(VENV)/.installed-dev node_modules/.installed $(VENV)/.system-deps

# The linters, then the whole suite under coverage (the real servers it starts
# included), then the branch coverage of the app's modules. The in-process
# tests run on both cores (each worker with a MariaDB database of its own);
# the suites that start real servers, clusters and containers one at a time.
SERVER_SUITES := tests/server tests/cluster tests/container
test: lint $(TEST_SETUP)
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest -n 2 --durations=20 \
		$(addprefix --ignore=,$(SERVER_SUITES)) tests
	$(BIN)/coverage run -m pytest --durations=30 $(SERVER_SUITES)
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

# newman, which runs the Postman collection in the tests: a local install, pinned
# by package-lock.json, redone whenever the lock file changes.
node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm is missing: install Debian's nodejs and npm packages" >&2; exit 1; }
	npm ci --no-audit --no-fund
	touch $@

# For the edit loop, in well under a minute: the linters, then the tests that
# need no server, on SQLite only.
check: lint
	$(BIN)/pytest -q -n 2 -m "not slow" -k "not mysqlclient and not mariadb" \
		--ignore=tests/server --ignore=tests/cluster -p no:cacheprovider

# ruff, the type checker over the app's modules, and the import order
# (pyproject.toml's layers).
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(MODULES)
	$(BIN)/python scripts/check-layers

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

system-deps:
	scripts/system-deps

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt $(VENV)/.build-deps
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.build-deps
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.installed

# The Debian packages the drivers build with, then those the tests need:
# looked for once (remove a stamp to look again).
$(VENV)/.build-deps: scripts/system-deps | $(VENV)/bin/python
	scripts/system-deps
	touch $@

$(VENV)/.system-deps: scripts/system-deps | $(VENV)/bin/python
	scripts/system-deps --test
	touch $@

# A random signing key and a storage key (encryption at rest) for this
# checkout, kept in .env (which git ignores). Keep a copy of the storage key
# somewhere safe: without it the files in the database cannot be read.
.env:
	@echo "SECRET_KEY=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(48))')" > $@
	@echo "STORAGE_KEYS=*$$(date +%Y-%m):$$($(PYTHON) -c 'import base64, secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())')" >> $@
	@echo "Wrote a new SECRET_KEY and STORAGE_KEYS to .env (back up STORAGE_KEYS: files cannot be read without it)"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache htmlcov .coverage test-artifacts

# Production-style serving with the committed gunicorn settings.
serve: $(VENV)/.installed .env
	$(FLASK) init-db
	$(BIN)/gunicorn -c gunicorn.conf.py 'app:create_app()'

# Speed and memory of uploads and downloads against the raw database, one at a
# time and eight at once (MariaDB); then a share link's download against the
# owner's of the same file (its checks, claim and access log row; SQLite); then
# a link to 8 files of 2 GiB in all as one zip against the owner's downloads of
# them, and the worker's memory meanwhile (about a minute; ZIP_ARGS="--zip-size
# 256" for a quicker run).
bench: $(VENV)/.installed-dev
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/links.py $(LINKS_ARGS)
	$(BIN)/python bench/zip.py $(ZIP_ARGS)
	$(BIN)/python bench/encryption.py $(ENCRYPTION_ARGS)

# Requests a second under wrk, each against a baseline on the same gunicorn
# command line: GET /livez against a bare Flask app, GET /files against the
# usual Flask-JWT-Extended stack (about two minutes); then how GET /files grows
# with 10, 1,000 and 100,000 files (under a minute). MariaDB.
.PHONY: load
load: $(VENV)/.installed-dev
	$(BIN)/python bench/load.py $(LOAD_ARGS)
	$(BIN)/python bench/listing.py $(LISTING_ARGS)
