#!/usr/bin/env bash
# The benchmark suite: release build, then `lore-bench suite` (arguments are passed on), the
# embedding models side by side, and the usual Python RAG stack beside Lore (bench/peer).
# Results: bench/results/{suite,model-int8-dyn,peer}.{md,json}. Needs ../shared/data and the
# models (python3 scripts/setup-models.py). BENCH_SKIP_PEER=1 skips the peer (it builds a
# virtual environment from PyPI and takes the longest).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/setup-models.py
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -p lore -p lore-bench
"$target/release/lore-bench" suite --lore "$target/release/lore" "$@"
# The default model (integer kernels) against the packaged one it is derived from.
models="${LORE_MODELS_DIR:-.models}"
"$target/release/lore-bench" models --baseline "$models/all-minilm-l6-v2-int8" \
  --candidate "$models/all-minilm-l6-v2-int8-dyn" \
  --folder ../shared/data/corpora/sourcegraph-handbook/content --out bench/results/model-int8-dyn
if [[ -z "${BENCH_SKIP_PEER:-}" ]]; then
  LORE_BENCH="$target/release/lore-bench" bash bench/peer/run.sh all
fi
