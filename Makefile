# Real-time stock analytics on Apache Flink: local pipeline, tests, packaging.
# `make check` is the fast tier (about a minute): lint, import contracts, types and the tests that
# need no service, JVM, browser, zip build or external tool; it needs only the Python venv.
# `make run` and `make test` install everything they need on first use; only `make test` needs a
# system package (Chromium, for the dashboard tests), so `make run` needs no root, sudo or apt.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
JAR := flink_job/target/pyflink-dependencies.jar
OPENSEARCH_VERSION := 2.19.6
OPENSEARCH_DIST := .local/opensearch-$(OPENSEARCH_VERSION)
NODE_PACKAGES := stack/node_modules/.installed
LIVE_NODE_PACKAGES := dashboards/live/node_modules/.installed
CHROMIUM := /usr/bin/chromium
# checkov's pins would downgrade boto3 in the project venv: it gets its own.
INFRA_VENV := .local/infra-venv
# The standalone cluster's Python (stack/cluster.py): apache-flink and its dependencies only, like a
# Managed Flink TaskManager's, so a job that runs there brings its own package.
RUNTIME_VENV := .local/flink-runtime
PYTEST_ARGS ?=
# Locked dependencies: requirements/*.in name what each environment needs, `make lock` compiles them
# with uv into requirements/*.txt (every version pinned, every file's hash), and every install below
# takes exactly those (--require-hashes --no-deps). requirements.txt is the project venv's set.
REQ := requirements
LOCKS := $(REQ)/runtime.txt $(REQ)/test.txt $(REQ)/tools.txt
LOCK_PYTHON := 3.11
LAMBDA_PYTHON := 3.12
PIP_LOCKED := pip install --quiet --disable-pip-version-check --require-hashes --no-deps
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --generate-hashes --universal $(if $(UPGRADE),--upgrade)

# `make run` uses KINESIS_PORT, OPENSEARCH_PORT, DYNAMODB_PORT, DASHBOARD_PORT and STACK_RUN_DIR as
# given (defaults 4568, 9200, 8000, 8050). `make test` has its own ports and run directory, so the
# suite can run while `make run` is running and never touches its data.
TEST_KINESIS_PORT ?= 24568
TEST_OPENSEARCH_PORT ?= 29200
TEST_DYNAMODB_PORT ?= 28000
TEST_DASHBOARD_PORT ?= 28050
TEST_RUN_DIR ?= $(if $(filter 0,$(shell id -u)),/var/tmp/stock-analytics-test,$(CURDIR)/.local/test-run)
TEST_ENV := KINESIS_PORT=$(TEST_KINESIS_PORT) OPENSEARCH_PORT=$(TEST_OPENSEARCH_PORT) \
  DYNAMODB_PORT=$(TEST_DYNAMODB_PORT) DASHBOARD_PORT=$(TEST_DASHBOARD_PORT) STACK_RUN_DIR=$(TEST_RUN_DIR)

.PHONY: help setup test-setup run test check screenshot bench stop jar services retention clean cluster-runtime package deploy start destroy dashboards index-templates dashboards-tunnel screenshot-alerts lock

help:
	@echo "make run    - the whole pipeline locally, live (Ctrl-C stops it)"
	@echo "make test   - the full test suite against real local services (own ports; safe next to make run)"
	@echo "make check  - the fast tier: ruff, import contracts, mypy and the tests that need no service (~1 min)"
	@echo "make stop   - stop a running make run, and anything a previous run left behind"
	@echo "make retention - delete expired indices of the local OpenSearch (RETENTION_DAYS; make run does it hourly)"
	@echo "make setup  - install what make run needs (done by run on first use; no root needed)"
	@echo "make test-setup - also Chromium (apt) and checkov, for the tests (done by test on first use)"
	@echo "make screenshot - regenerate docs/dashboard.png (the README's dashboard picture)"
	@echo "make bench  - throughput, latency and fetcher benchmarks"
	@echo "make package / deploy / start / destroy - AWS (see README, Deploy to AWS)"
	@echo "make index-templates / dashboards-tunnel - AWS (see infra/README.md)"
	@echo "make dashboards URL=... - import the OpenSearch Dashboards objects"
	@echo "make screenshot-alerts - regenerate docs/dashboard-alerts.png (README, Alerts)"
	@echo "make lock   - recompile requirements/*.txt from requirements/*.in (UPGRADE=1: newest allowed versions)"

setup: $(VENV)/.installed $(JAR) $(NODE_PACKAGES) $(LIVE_NODE_PACKAGES) $(OPENSEARCH_DIST)/bin/opensearch

# What only the tests need: a browser for the dashboard tests, checkov for the template checks, and
# the standalone cluster's Python for the cluster tests.
test-setup: setup $(CHROMIUM) $(INFRA_VENV)/.installed $(RUNTIME_VENV)/.installed

$(VENV)/.installed: requirements.txt $(LOCKS)
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or set PYTHON=..."; exit 1; }
	@echo "==> Python venv ($(VENV))"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m $(PIP_LOCKED) -r requirements.txt
	@touch $@

jar: $(JAR)
$(JAR): flink_job/pom.xml $(shell find flink_job/src -name "*.java")
	@command -v mvn >/dev/null || { echo "error: mvn not found; install Maven 3.8+ and a JDK 11 or 17"; exit 1; }
	@echo "==> connector uber-jar (Maven)"
	cd flink_job && mvn --batch-mode --quiet --no-transfer-progress package
	@touch $@

$(NODE_PACKAGES): stack/package.json stack/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found; install Node.js 18+"; exit 1; }
	@echo "==> local Kinesis and DynamoDB (npm)"
	cd stack && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(LIVE_NODE_PACKAGES): dashboards/live/package.json dashboards/live/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found; install Node.js 18+"; exit 1; }
	@echo "==> charting library of the live dashboard (npm)"
	cd dashboards/live && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The browser the dashboard tests drive: Debian's package (Playwright downloads no browser). It brings
# a font with it (fontconfig's dependency), which the screenshot needs.
$(CHROMIUM):
	@echo "==> Chromium for the dashboard tests (apt)"
	@SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium

$(OPENSEARCH_DIST)/bin/opensearch:
	@echo "==> OpenSearch $(OPENSEARCH_VERSION) (Maven Central)"
	mkdir -p .local
	mvn --batch-mode --quiet --no-transfer-progress dependency:copy \
	  -Dartifact=org.opensearch.distribution.integ-test-zip:opensearch:$(OPENSEARCH_VERSION):zip \
	  -DoutputDirectory=.local
	cd .local && unzip -q -o opensearch-$(OPENSEARCH_VERSION).zip && rm opensearch-$(OPENSEARCH_VERSION).zip
	@touch $@

$(INFRA_VENV)/.installed: $(REQ)/checkov.txt
	@echo "==> template checker (checkov, own venv)"
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/$(PIP_LOCKED) -r $(REQ)/checkov.txt
	@touch $@

cluster-runtime: $(RUNTIME_VENV)/.installed
$(RUNTIME_VENV)/.installed: $(REQ)/flink-runtime.txt
	@echo "==> Flink runtime venv for the standalone cluster ($(RUNTIME_VENV))"
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/pip install --quiet --upgrade pip
	$(RUNTIME_VENV)/bin/$(PIP_LOCKED) -r $(REQ)/flink-runtime.txt
	@touch $@

# Recompiles every lock from its .in (a pin changed in an .in, or UPGRADE=1). The runtime's versions
# constrain the others (-c runtime.txt), so the tests, the cluster and the Lambda zips use the same.
# A lock keeps its other pins unless UPGRADE=1. Then `make setup` installs the new locks.
lock: $(VENV)/.installed
	$(UV_COMPILE) --python-version $(LOCK_PYTHON) $(REQ)/runtime.in -o $(REQ)/runtime.txt
	$(UV_COMPILE) --python-version $(LOCK_PYTHON) $(REQ)/test.in -o $(REQ)/test.txt
	$(UV_COMPILE) --python-version $(LOCK_PYTHON) $(REQ)/tools.in -o $(REQ)/tools.txt
	$(UV_COMPILE) --python-version $(LOCK_PYTHON) $(REQ)/flink-runtime.in -o $(REQ)/flink-runtime.txt
	$(UV_COMPILE) --python-version $(LOCK_PYTHON) $(REQ)/checkov.in -o $(REQ)/checkov.txt
	$(UV_COMPILE) --python-version $(LAMBDA_PYTHON) $(REQ)/fetcher-lambda.in -o $(REQ)/fetcher-lambda.txt
	$(UV_COMPILE) --python-version $(LAMBDA_PYTHON) $(REQ)/alerts-lambda.in -o $(REQ)/alerts-lambda.txt
	$(UV_COMPILE) --python-version $(LAMBDA_PYTHON) $(REQ)/loader-lambda.in -o $(REQ)/loader-lambda.txt

package: $(VENV)/.installed $(JAR)
	$(PY) -m infra.package dist

deploy: package
	@test -n "$(ARTIFACT_BUCKET)" || { echo "error: set ARTIFACT_BUCKET=<an S3 bucket you own in AWS_REGION>"; exit 1; }
	ARTIFACT_BUCKET=$(ARTIFACT_BUCKET) infra/deploy.sh deploy

start:
	infra/deploy.sh start

destroy:
	infra/deploy.sh destroy

index-templates:
	infra/deploy.sh index-templates

dashboards-tunnel:
	infra/deploy.sh dashboards-tunnel

dashboards: $(VENV)/.installed
	@test -n "$(URL)" || { echo "error: set URL=<OpenSearch Dashboards base URL>; on AWS https://DOMAIN-ENDPOINT/_dashboards"; exit 1; }
	$(PY) -m dashboards.import_saved_objects "$(URL)" $(if $(OSD_USER),--user "$(OSD_USER)")

services: setup
	$(PY) -m stack.services start

# What ISM does on AWS: delete the indices older than their retention (RETENTION_DAYS=stock-dlq=14,...).
retention: $(VENV)/.installed
	$(PY) -m stack.retention $(if $(DRY_RUN),--dry-run)

# The README's picture of the alerts feed: sample data through the pure core and the alerts, in Chromium.
screenshot-alerts: services
	$(PY) -m docs_tools.screenshot_alerts

run: setup
	$(PY) -m stack.run

# The tests `make check` leaves to `make test`: their marks (pyproject.toml, tests/conftest.py).
CHECK_MARKS := not services and not jvm and not browser and not packaging and not tools
# A tier that lost its tests to a wrong mark must not pass: it has over 300 today. The suite's own
# ports (TEST_ENV), so that a test marked wrongly never touches the data of a running `make run`.
CHECK_MIN_TESTS := 150

check: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(TEST_ENV) $(PY) -m pytest tests -m "$(CHECK_MARKS)" --min-selected $(CHECK_MIN_TESTS) $(PYTEST_ARGS)

test: test-setup
	$(TEST_ENV) $(PY) -m stack.services start
	$(TEST_ENV) $(PY) -m pytest tests $(PYTEST_ARGS); status=$$?; $(TEST_ENV) $(PY) -m stack.services stop; exit $$status

# The README's picture of the live dashboard, taken by its browser test on the test stack.
screenshot: test-setup
	$(TEST_ENV) $(PY) -m stack.services start opensearch
	$(TEST_ENV) DASHBOARD_SCREENSHOT=$(CURDIR)/docs/dashboard.png $(PY) -m pytest tests/test_dashboard_live.py -q \
	  -k draws; status=$$?; $(TEST_ENV) $(PY) -m stack.services stop opensearch; exit $$status

# A benchmark, not a test: prints a table, writes bench/results/; BENCH_ARGS picks parts and sizes.
BENCH_ARGS ?= all
bench: setup $(RUNTIME_VENV)/.installed
	$(PY) -m stack.services start
	$(PY) -m bench $(BENCH_ARGS)

# Ends a live `make run` (it stops itself), then every process still marked with the run directory
# (the job's JVM included), also those of a run that crashed or was killed.
stop:
	-$(PY) -m stack.run --stop
	-$(PY) -m stack.services stop

clean: stop
	rm -rf $(VENV) .local flink_job/target stack/node_modules dashboards/live/node_modules dist
