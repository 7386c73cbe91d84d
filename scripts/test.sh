#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine with the Rust toolchain, Python 3 and pip.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/setup-models.py
if ! command -v pdftotext >/dev/null; then
  echo "test.sh: pdftotext is needed as the PDF extraction reference: apt-get install poppler-utils" >&2
  exit 1
fi
# playwright-core (pinned in package-lock.json) drives the system's chromium; no browser download.
# uplot is there to check its vendored copy against the package.
if command -v npm >/dev/null && { [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/uplot ]; }; then
  npm ci --no-audit --no-fund --loglevel=error
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lore-target}"
cargo test --workspace --locked "$@"
