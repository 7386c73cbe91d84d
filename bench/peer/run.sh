#!/usr/bin/env bash
# bench/peer: the usual Python RAG stack next to Lore. See README.md.
#
#   bench/peer/run.sh quality            every development set (or SETS="contoso-hr squad-es")
#   bench/peer/run.sh speed              ingest and search at ~12k chunks (handbook), then ~100k
#                                        (all the real text in 5 replicas); SPEED=12k for the first only
#   bench/peer/run.sh all                both
#
# Extra arguments go to peer.py (e.g. --chunk-size 400 --overlap 50, --title, --questions 100).
# Results: bench/results/peer.json and peer.md; intermediate files in bench/peer/work/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
what="${1:-all}"
shift || true

"$here/setup.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
if [[ -z "${LORE_BENCH:-}" ]]; then
  (cd "$repo" && cargo build --release -p lore-bench)
  export LORE_BENCH="$CARGO_TARGET_DIR/release/lore-bench"
fi
py="$here/.venv/bin/python"
cd "$repo"

if [[ "$what" == quality || "$what" == all ]]; then
  sets="${SETS:-samples handbook families contoso-hr clapnq-ci clapnq squad-es}"
  args=()
  for s in $sets; do args+=(--set "eval/sets/$s.toml"); done
  "$py" "$here/peer.py" quality "${args[@]}" "$@"
fi
if [[ "$what" == speed || "$what" == all ]]; then
  "$py" "$here/peer.py" speed --mix handbook --replicas 1 "$@"
  if [[ "${SPEED:-}" != 12k ]]; then
    "$py" "$here/peer.py" speed --mix all --replicas 5 "$@"
  fi
fi
cat "$repo/bench/results/peer.md"
