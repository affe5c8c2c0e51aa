# The two commands: `make run` (standalone demo, no cluster) and `make test` (every check).
.PHONY: run test fmt lint build manifests chart bench fuzz image

# Renders charts/vane with Helm's Go SDK (the wheel in charts/tests/requirements.txt).
RENDER := python3 charts/tests/render.py

run:
	./scripts/demo.sh

# Every package of the workspace (vane and crates/test-apiserver), then the chart tests, which
# `cargo test` leaves out because they need Python and the Helm wheel (tests/chart.rs).
test: fmt lint
	cargo test --workspace --all-targets
	cargo test --test chart

fmt:
	cargo fmt --all -- --check

# --all-targets leaves out the chart tests (test = false in Cargo.toml): linted by name.
lint:
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --test chart -- -D warnings

build:
	cargo build --release --bin vane

# The property tests (tests/integration/properties.rs, every `prop_*`), 20,000 cases each
# instead of make test's 64; CASES=N to change.
fuzz:
	PROPTEST_CASES=$${CASES:-20000} cargo test --test integration prop_

# Benchmarks (not tests): vane vs HAProxy vs nginx on this machine (bench/README.md; WORKERS=2
# for two worker threads each), then the balancers' pick at 10, 100 and 1,000 endpoints.
bench:
	WORKERS=$${WORKERS:-1} bench/run.sh
	cargo bench --bench pick
	cargo bench --bench lookup
	cargo bench --bench control_plane

# README's annotation table sits between these lines (tests/integration/generated.rs).
ANNOTATIONS_BEGIN := <!-- BEGIN generated: vane annotations -->
ANNOTATIONS_END := <!-- END generated: vane annotations -->

# Regenerates committed files that derive from code (tests fail when they drift).
manifests:
	cargo run --quiet --bin vane -- crdgen > crds/backendpolicy.yaml
	cp crds/backendpolicy.yaml charts/vane/crds/backendpolicy.yaml
	$(RENDER) manifest > deploy/vane.yaml.tmp || { rm -f deploy/vane.yaml.tmp; exit 1; }
	mv deploy/vane.yaml.tmp deploy/vane.yaml
	cargo run --quiet --bin vane -- annotations > target/annotations.md
	awk -v begin='$(ANNOTATIONS_BEGIN)' -v end='$(ANNOTATIONS_END)' \
		'FNR == NR { table = table $$0 "\n"; next } \
		 $$0 == begin { print; printf "%s", table; skip = 1; next } \
		 $$0 == end { skip = 0 } !skip' target/annotations.md README.md > README.md.tmp
	mv README.md.tmp README.md

# Lints the chart strictly and renders it, with the defaults and with each test values file,
# into target/chart/ (tests/chart.rs checks what these renders contain).
chart:
	@mkdir -p target/chart
	$(RENDER) lint
	$(RENDER) template --include-crds > target/chart/defaults.yaml
	@set -e; for values in charts/tests/values/*.yaml; do \
		name=$$(basename $$values .yaml); \
		echo "$(RENDER) lint -f $$values"; \
		$(RENDER) lint -f $$values; \
		$(RENDER) template --include-crds -f $$values > target/chart/$$name.yaml; \
	done
	@echo "rendered into target/chart/: $$(cd target/chart && ls | tr '\n' ' ')"

# The container image (Dockerfile), with docker or podman, whichever is here and running. Named
# as the chart's default image (tests/chart.rs checks that they agree); IMAGE=REGISTRY/vane:TAG
# to name it otherwise. Says so, and fails, where neither can build. Releases are built and
# pushed by .github/workflows/release.yml instead.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE ?= ghcr.io/vane-dev/vane:$(VERSION)
image:
	@tool=$$(command -v docker || command -v podman); \
	if [ -z "$$tool" ]; then \
		echo "make image: neither docker nor podman is installed here; install one, or build on a machine that has one (docker build -t $(IMAGE) .)"; \
		exit 1; \
	fi; \
	if ! $$tool info >/dev/null 2>&1; then \
		echo "make image: $$tool is installed but cannot build here ($$tool info fails: is its daemon running?)"; \
		exit 1; \
	fi; \
	echo "$$tool build -t $(IMAGE) ."; \
	$$tool build --build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) -t $(IMAGE) .
