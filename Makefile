# The two commands: `make run` (standalone demo, no cluster) and `make test` (every check).
.PHONY: run test fmt lint build manifests

run:
	./scripts/demo.sh

test: fmt lint
	cargo test --all-targets

fmt:
	cargo fmt --all -- --check

lint:
	cargo clippy --all-targets -- -D warnings

build:
	cargo build --release --bin vane

# Regenerates committed files that derive from code (tests fail when they drift).
manifests:
	cargo run --quiet --bin vane -- crdgen > crds/backendpolicy.yaml
