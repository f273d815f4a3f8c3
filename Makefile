# One command per routine. Every target sets up what it needs first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: demo test test-fast lint bench clean install

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vicidial-archiver demo

# Tests run in TEST_WORKERS parallel processes (most wait on MariaDB, not on a core);
# TEST_WORKERS=0 runs them in this one process.
TEST_WORKERS ?= 3

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check archiver tests bench
	$(BIN)/ruff format --check archiver tests bench
	$(BIN)/mypy

# The bench extra (matplotlib), and pt-archiver (Debian's percona-toolkit) and GNU time when
# missing: as root, or through sudo.
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@pkgs=""; command -v pt-archiver >/dev/null || pkgs="percona-toolkit"; \
	test -x /usr/bin/time || pkgs="$$pkgs time"; \
	if [ -n "$$pkgs" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	  echo "installing $$pkgs (apt-get) for the bench"; \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkgs; \
	fi
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# A dialer box in one step, as root: a venv under PREFIX with the tool and its API extra, the
# systemd units and the logrotate snippet from contrib/, the log and config folders, the
# vicidial-archiver system user, and /etc/vicidial-archiver.toml from the example when there is
# none. DESTDIR stages it all under another root (no user is made then).
PREFIX ?= /opt/vicidial-archiver
DESTDIR ?=
SYSTEMD_DIR ?= /etc/systemd/system

install:
	@$(PY) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 11) else f"vicidial-archiver needs Python 3.11 or later; $(PY) is {v.major}.{v.minor} (PY=python3.11 make install)")'
	$(PY) -m venv $(DESTDIR)$(PREFIX)
	$(DESTDIR)$(PREFIX)/bin/python -m pip install -q --upgrade pip
	$(DESTDIR)$(PREFIX)/bin/python -m pip install -q '.[serve]'
	install -d -m 0755 $(DESTDIR)$(SYSTEMD_DIR) $(DESTDIR)/etc/logrotate.d
	install -m 0644 contrib/systemd/vicidial-archiver.service contrib/systemd/vicidial-archiver.timer \
	  contrib/systemd/vicidial-archiver-api.service $(DESTDIR)$(SYSTEMD_DIR)/
	install -m 0644 contrib/logrotate/vicidial-archiver $(DESTDIR)/etc/logrotate.d/vicidial-archiver
	install -d -m 0750 $(DESTDIR)/etc/vicidial-archiver $(DESTDIR)/var/log/vicidial-archiver
	test -e $(DESTDIR)/etc/vicidial-archiver.toml || \
	  install -m 0640 config.example.toml $(DESTDIR)/etc/vicidial-archiver.toml
	@if [ -z "$(DESTDIR)" ]; then \
	  id -u vicidial-archiver >/dev/null 2>&1 || \
	    useradd --system --no-create-home --shell /usr/sbin/nologin vicidial-archiver; \
	  chown vicidial-archiver:vicidial-archiver /var/log/vicidial-archiver; \
	  chgrp vicidial-archiver /etc/vicidial-archiver.toml; \
	  command -v systemctl >/dev/null && systemctl daemon-reload || true; \
	fi
	@echo "installed: $(PREFIX)/bin/vicidial-archiver; next: edit /etc/vicidial-archiver.toml, then"
	@echo "  $(PREFIX)/bin/vicidial-archiver --config /etc/vicidial-archiver.toml schema init"
	@echo "  systemctl enable --now vicidial-archiver.timer"
