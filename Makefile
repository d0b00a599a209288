# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# `make run` installs the runtime dependencies only; `make test` adds the test tools.
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed-test

.PHONY: run test lint sysdeps bench fuzz clean

$(RUN_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(RUN_STAMP)
	$(BIN)/relay serve

# System packages the tests drive for real (installed only when missing).
sysdeps:
	@command -v swaks >/dev/null 2>&1 || { \
	  echo "installing swaks"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q swaks >/dev/null; }
	@# Postfix for the tests' private instances: "No configuration" leaves /etc/postfix
	@# without main.cf, so the system service never starts (nor takes port 25).
	@test -x /usr/sbin/postfix || { \
	  echo "installing postfix"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    postfix libsasl2-modules >/dev/null; }
	@# systemd-analyze checks the units in packaging/ (tests/test_packaging.py).
	@command -v systemd-analyze >/dev/null 2>&1 || { \
	  echo "installing systemd (systemd-analyze)"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    systemd >/dev/null; }
	@# Debian's Chromium for the browser tests (Playwright drives it; never `playwright install`).
	@test -x /usr/bin/chromium || { \
	  echo "installing chromium"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    chromium >/dev/null; }
	@# npm, which installs axe-core for the browser tests' accessibility checks.
	@command -v npm >/dev/null 2>&1 || { \
	  echo "installing npm"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    npm >/dev/null; }
	@# Debian's nginx for the README's reverse-proxy recipe (tests/integration); a
	@# policy-rc.d of our own keeps the package from starting the system's nginx on port 80.
	@test -x /usr/sbin/nginx || { \
	  echo "installing nginx"; \
	  had_policy=0; test -e /usr/sbin/policy-rc.d && had_policy=1; \
	  test $$had_policy = 1 || printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
	  chmod +x /usr/sbin/policy-rc.d; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    nginx-light >/dev/null; status=$$?; \
	  test $$had_policy = 1 || rm -f /usr/sbin/policy-rc.d; exit $$status; }
	@# Debian's PostgreSQL for the tests' private clusters (tests/support/postgres.py); a
	@# policy-rc.d of our own keeps the package from starting the system's cluster on port 5432.
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing postgresql"; \
	  had_policy=0; test -e /usr/sbin/policy-rc.d && had_policy=1; \
	  test $$had_policy = 1 || printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
	  chmod +x /usr/sbin/policy-rc.d; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    postgresql >/dev/null; status=$$?; \
	  test $$had_policy = 1 || rm -f /usr/sbin/policy-rc.d; exit $$status; }
	@# SpamAssassin and its shipped rules for the deliverability test (tests/integration).
	@test -x /usr/bin/spamassassin || { \
	  echo "installing spamassassin"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    spamassassin >/dev/null; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# axe-core, which the browser tests inject to check each page's accessibility: the npm
# package pinned by tests/browser/package-lock.json, installed beside the tests.
AXE := tests/browser/node_modules/axe-core/axe.min.js

$(AXE): tests/browser/package.json tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
	touch $(AXE)

test: $(STAMP) sysdeps $(AXE) lint
	$(BIN)/pytest -q

# The rewriter under atheris (installed on demand), by hand: make fuzz FUZZ_ARGS=-runs=100000
fuzz: $(STAMP)
	$(BIN)/python -c 'import atheris' 2>/dev/null || $(BIN)/pip install -q atheris || true
	PYTHONPATH=. $(BIN)/python fuzz/fuzz_rewrite.py $(FUZZ_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
