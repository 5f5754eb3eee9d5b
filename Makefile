# The two commands the README starts with: `make run` and `make test`.
# Both create .venv on first use; nothing else needs installing by hand.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test fuzz lint bench reliability soak docs settings clean

$(STAMP): pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { echo "venv failed: trying apt-get install python3-venv"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m prefork start --bind 127.0.0.1:8000

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The request-path fuzzer (tests/hostile/test_fuzz_server.py) far beyond CI's
# 1,000 inputs: about four minutes for the default 100,000.
FUZZ_EXAMPLES ?= 100000
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider tests/hostile/test_fuzz_server.py

lint: $(STAMP)
	$(VENV)/bin/ruff check prefork tests bench examples
	$(VENV)/bin/mypy

# The load benchmark needs wrk; install it from Debian when missing.
bench: $(STAMP)
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(PY) -m bench $(BENCH_ARGS)

# prefork and gunicorn under reloads, recycling, scaling, a killed worker, an
# upgrade and log rotation (about four minutes); rewrites the table in
# docs/reliability.md.
reliability: $(STAMP)
	$(PY) -m bench.reliability --write $(RELIABILITY_ARGS)

# Load with a HUP every 30 s, sampling memory, fds and threads, for
# SOAK_MINUTES; the CSV and plot go to bench/results/.
SOAK_MINUTES ?= 30
soak: $(STAMP)
	$(PY) -m bench.soak --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

# The documentation site; --strict turns a broken link or nav entry into an error.
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

# docs/settings.md, prefork/_settings.py (the type of every setting, for mypy),
# conf/prefork.toml and the gunicorn map in docs/migrating.md are generated from prefork/config.py (and prefork/gunicorn_conf.py);
# tests/test_config.py fails when they are stale.
settings: $(STAMP)
	$(PY) -c "from prefork.config import settings_markdown as f; print(f(), end='')" > docs/settings.md
	$(PY) -c "from prefork.config import settings_module as f; print(f(), end='')" > prefork/_settings.py.new
	mv prefork/_settings.py.new prefork/_settings.py
	$(PY) -c "from prefork.config import example_toml as f; print(f(), end='')" > conf/prefork.toml
	$(PY) -c "import pathlib; from prefork.gunicorn_conf import update_migrating as f; \
	  p = pathlib.Path('docs/migrating.md'); p.write_text(f(p.read_text()))"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
