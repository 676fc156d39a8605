# kithara-io developer commands.  `make test` works on a fresh machine: it creates .venv,
# installs the package with its test and docs extras, and (as root) the Debian packages the tests use.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEB_PACKAGES := nginx-light libportaudio2 jackd2 icecast2 openssl \
  gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav \
  lighttpd lighttpd-mod-openssl apache2-bin caddy varnish squid tinyproxy
PYTEST_ARGS ?=
# npm packages the tests use (Azurite, the Azure Blob emulator), installed under .npm/
NPM_PREFIX := .npm
NPM_STAMP  := $(NPM_PREFIX)/.installed
NPM_PACKAGES := azurite@3 http-server@14

.PHONY: test lint demo bench docs pictures deps npm venv clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,lint,docs]'
	touch $@

venv: $(STAMP)

# Install only the Debian packages that are missing; never touch apt when not root.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "warning: missing Debian packages:$$missing (run as root to install); tests needing them are skipped"; \
	  fi; \
	fi

# Node.js comes with these machines; without npm the Azure tests are skipped.
$(NPM_STAMP): Makefile
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --silent --no-audit --no-fund --prefix $(NPM_PREFIX) $(NPM_PACKAGES) && touch $@; \
	else echo "warning: npm missing: tests needing $(NPM_PACKAGES) are skipped"; fi

npm: $(NPM_STAMP)

test: lint deps npm docs
	$(PY) -m pytest $(PYTEST_ARGS)

# Lint, types and the Python versions claimed (setup.cfg python_requires), settings in
# pyproject.toml.
lint: venv
	$(PY) -m ruff check kithara_io
	$(PY) -m ruff format --check kithara_io
	$(PY) -m ruff check --select F,E9 tests bench examples  # pyflakes: names, imports
	$(PY) -m mypy
	$(VENV)/bin/vermin --quiet --no-tips --violations --target=3.9- kithara_io

demo: venv deps
	$(PY) examples/demo.py

# The documentation site (mkdocs.yml, docs/) into site/; --strict: a broken link or reference fails.
# Offline: no plugin fetches anything at build time (fonts off, no social/privacy plugins).
# No --quiet: it hides the warnings that --strict counts, and a broken link would pass.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

bench: venv
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/run.py; status=$$?; $(PY) bench/charts.py && exit $$status

# The documentation's pictures: fetch timelines from real runs on loopback (a few seconds).
pictures: venv
	$(PY) docs/gen_timelines.py

clean:
	rm -rf $(VENV) $(NPM_PREFIX) *.egg-info .pytest_cache .hypothesis .mypy_cache .ruff_cache site
