# ferrowsgi developer tasks. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: demo install deps lint rust-test test

demo: install            ## build, install and run the demo app on http://127.0.0.1:8000
	ferrowsgi

install:                 ## build the Rust extension (release) and install the package
	$(PIP) install --quiet .

deps:                    ## everything the tests need (Python packages, Rust components)
	$(PIP) install --quiet "maturin>=1.9.4,<2" pytest pytest-timeout httpx flask django ruff
	rustup component add rustfmt clippy >/dev/null 2>&1 || true
	command -v ss >/dev/null || { command -v apt-get >/dev/null && \
		(apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null); } || true
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || { command -v apt-get >/dev/null && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		 apt-get install -y -qq --no-install-recommends nginx >/dev/null 2>&1); } || \
		echo "make deps: could not install nginx; tests/test_nginx.py will be skipped" >&2

lint:                    ## formatting and lints, Rust and Python
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

rust-test:               ## unit tests of the pure-Rust parts
	cargo test --quiet

test: deps lint rust-test install   ## the whole suite: lints, cargo test, pytest against the real server
	$(PYTHON) -m pytest tests -q
