# cloudfilm: `make run` starts the demo, `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DATA   ?= var/cloudfilm
HOST   ?= 127.0.0.1
PORT   ?= 8080

.PHONY: run test lint fuzz bench install system-deps clean-data lock frontend web

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Debian packages the tests and benchmarks talk to as real peers: dcmtk and Orthanc;
# and the browser the page tests drive (Playwright never downloads one), with a Chinese font.
system-deps:
	@if ! command -v storescu >/dev/null || ! command -v Orthanc >/dev/null || ! command -v haproxy >/dev/null \
	    || ! test -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so || ! test -x /usr/bin/chromium || ! fc-list :lang=zh | grep -q .; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb dcmtk chromium fonts-wqy-zenhei haproxy; \
	fi

# Front-end assets, built from the project's own npm lock files (nothing at run time):
# the Cornerstone3D patient viewer (Vite) and the prebuilt OHIF viewer, whose sources are in
# frontend/ (the Python package's src/cloudfilm/web serves what is built). `make web` is an alias.
FRONTEND_STAMP := src/cloudfilm/web/static/build/.stamp
frontend: $(FRONTEND_STAMP)
web: frontend

$(FRONTEND_STAMP): frontend/build.sh $(wildcard frontend/viewer/package*.json frontend/viewer/*.sh frontend/viewer/vite.config.* frontend/viewer/src/* frontend/viewer/src/i18n/* frontend/viewer/index.html frontend/ohif/package*.json frontend/ohif/*.sh frontend/ohif/*.js frontend/ohif/no-runtime-deps/*)
	bash frontend/build.sh
	touch $(FRONTEND_STAMP)

run: $(STAMP) $(FRONTEND_STAMP)
	@if [ -z "$$(ls -A $(DATA)/blobs 2>/dev/null)" ]; then \
	  echo "creating demo data in $(DATA) (first run only)"; \
	  $(VENV)/bin/cloudfilm demo --data $(DATA); \
	fi
	$(VENV)/bin/cloudfilm demo-logins --data $(DATA) --base-url http://$(HOST):$(PORT)
	$(VENV)/bin/cloudfilm serve --data $(DATA) --host $(HOST) --port $(PORT)

test: $(STAMP) system-deps $(FRONTEND_STAMP) lint
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

# The gate before the tests: ruff's rule set and mypy (strict on domain/, services/, storage/
# and config) as pyproject.toml configures them; any finding fails the build.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

# The property-based fuzz tests for longer: `make test` runs each on a few derandomized
# examples; here each gets FUZZ_EXAMPLES fresh random ones (hypothesis prints a failing case).
FUZZ_EXAMPLES ?= 2000
fuzz: $(STAMP) system-deps
	CLOUDFILM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider \
	  tests/test_fuzz_parsers.py tests/test_fuzz_server.py

bench: $(STAMP) system-deps
	$(PY) benchmarks/run.py
	$(PY) benchmarks/run.py --only metadata,frames,retrieve --blob s3
	$(PY) benchmarks/bench_dimse.py
	$(PY) benchmarks/scale.py --db sqlite --sizes 10000,100000,1000000 --max-seed-minutes 90
	$(PY) benchmarks/scale.py --db postgresql --sizes 10000,100000,1000000,10000000 --max-seed-minutes 150
	$(PY) benchmarks/scale_report.py

# Re-pin after changing pyproject.toml dependencies.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet --upgrade pip
	.lockenv/bin/pip install --quiet '.[test]'
	.lockenv/bin/pip freeze --exclude cloudfilm > requirements.lock
	rm -rf .lockenv

clean-data:
	rm -rf $(DATA)
