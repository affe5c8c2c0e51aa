# The two commands: `make run` (standalone demo, no cluster) and `make test` (every check).
.PHONY: run test fmt lint build

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
