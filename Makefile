# ferrowsgi developer tasks. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
MATURIN ?= $(PYTHON) -m maturin
# Extra `maturin build` arguments for `make wheel`, e.g. `--features abi3` (empty: a
# wheel for $(PYTHON)'s CPython only). Exported so tests/test_wheel.py builds the same.
WHEEL_ARGS ?=
export WHEEL_ARGS

.PHONY: demo install install-wheel deps lint rust-test wheel sdist matrix test

demo: install            ## build, install and run the demo app on http://127.0.0.1:8000
	ferrowsgi

install:                 ## build the Rust extension (release) and install the package
	$(PIP) install --quiet .

install-wheel: wheel     ## install the release wheel `make wheel` built (one LTO build for both)
	$(PIP) install --quiet --force-reinstall --no-deps dist/ferrowsgi-*.whl

deps:                    ## everything the tests need (Python packages, Rust components)
	$(PIP) install --quiet "maturin>=1.9.4,<2" pytest pytest-timeout httpx flask django ruff \
		auditwheel h2 brotli zstandard "rich>=13"
	rustup component add rustfmt clippy >/dev/null 2>&1 || true
	@missing=""; \
	for tool in ss:iproute2 nginx:nginx apache2:apache2 curl:curl h2load:nghttp2-client openssl:openssl; do \
		command -v $${tool%%:*} >/dev/null || test -x /usr/sbin/$${tool%%:*} || missing="$$missing $${tool#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing$$missing"; \
		{ command -v apt-get >/dev/null && apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		  apt-get install -y -qq --no-install-recommends $$missing >/dev/null 2>&1; } || \
		echo "make deps: could not install$$missing; the tests that need them fail" >&2; \
	fi

lint:                    ## formatting and lints, Rust and Python
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

rust-test:               ## unit tests of the pure-Rust parts
	cargo test --quiet

wheel:                   ## release wheel in dist/ (exactly one), checked to be manylinux
	mkdir -p dist
	rm -f dist/ferrowsgi-*.whl
	$(MATURIN) build --release --out dist --interpreter $(PYTHON) $(WHEEL_ARGS)
	@set -e; \
	set -- dist/ferrowsgi-*.whl; \
	if [ "$$#" -ne 1 ] || [ ! -f "$$1" ]; then \
		echo "make wheel: expected exactly one wheel in dist/, found: $$*" >&2; exit 1; fi; \
	whl=$$1; plat=$${whl##*-}; plat=$${plat%.whl}; \
	echo "wheel: $$whl ($$(du -k "$$whl" | cut -f1) KiB), platform tag: $$plat"; \
	case "$$plat" in manylinux*) ;; \
		*) echo "make wheel: $$whl is not manylinux-tagged ($$plat)" >&2; exit 1;; esac; \
	shown=$$($(PYTHON) -m auditwheel show "$$whl"); echo "$$shown"; \
	have=$$(echo "$$plat" | grep -o 'manylinux_2_[0-9]*' | head -n1 | sed 's/manylinux_2_//'); \
	need=$$(echo "$$shown" | tr -s ' \n' '  ' | grep -o 'following platform tag: "*manylinux_2_[0-9]*' \
		| head -n1 | sed 's/.*manylinux_2_//'); \
	if [ -z "$$have" ] || [ -z "$$need" ] || [ "$$have" -lt "$$need" ]; then \
		echo "make wheel: tag $$plat is not one auditwheel accepts (it needs manylinux_2_$$need)" >&2; \
		exit 1; fi

sdist:                   ## source distribution in dist/ (older ferrowsgi sdists removed)
	mkdir -p dist
	rm -f dist/ferrowsgi-*.tar.gz
	$(MATURIN) sdist --out dist

matrix:                  ## the interpreter matrix (tools/matrix.py)
	$(PYTHON) tools/matrix.py

test: deps lint rust-test install-wheel sdist   ## the whole suite: lints, cargo test, wheel and sdist, pytest against the real server, the matrix
	$(PYTHON) -m pytest tests -q
	$(MAKE) matrix
