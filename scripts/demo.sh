#!/usr/bin/env bash
# The main job on a fresh machine: set up the models, build, ingest the sample corpus,
# check both indexes agree, and search it as users with different access.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/setup-models.py
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lore-target}"
cargo build --locked -p lore
lore="$CARGO_TARGET_DIR/debug/lore"
data="${LORE_DATA_DIR:-data-demo}"
"$lore" --data-dir "$data" ingest ingest/samples.toml
"$lore" --data-dir "$data" status --check
echo; echo "### An employee in sales asks about salary bands (HR-only): nothing from hr/ comes back"
"$lore" --data-dir "$data" search "salary range for an Engineer I" --as dana@acme.example --groups sales -k 3
echo; echo "### An HR partner asks the same"
"$lore" --data-dir "$data" search "salary range for an Engineer I" --as alice@acme.example --groups hr -k 3
echo; echo "### Answers with citations (extractive: no language model configured)"
"$lore" --data-dir "$data" ask "How many days of paid vacation do I get, and can I carry some over?" --as carlos@acme.example
echo
"$lore" --data-dir "$data" ask "¿Cuántos días a la semana puedo teletrabajar?" --as carlos@acme.example
echo; echo "### A sales employee asks about salary bands: the knowledge base has nothing they may read"
"$lore" --data-dir "$data" ask "What is the salary range for an Engineer I?" --as dana@acme.example --groups sales
