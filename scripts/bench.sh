#!/usr/bin/env bash
# The benchmark suite: release build, then `lore-bench suite` (arguments are passed on).
# Results: bench/results/suite.md and suite.json. Needs ../shared/data and the models
# (python3 scripts/setup-models.py).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/setup-models.py
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -p lore -p lore-bench
exec "$target/release/lore-bench" suite --lore "$target/release/lore" "$@"
