#!/usr/bin/env bash
# The main job on a fresh machine: set up the models, build, ingest the sample corpus, check
# both indexes agree, search and ask as users with different access, then start the HTTP
# service and ask it a question over POST /v1/chat.
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

echo; echo "### The HTTP service: an API key, lore serve, and a question to POST /v1/chat"
workdir="$(mktemp -d)"
trap 'kill "${server_pid:-0}" 2>/dev/null || true; rm -rf "$workdir"' EXIT
key="$("$lore" --data-dir "$data" keys create --name "demo-$(date +%s)" --role agent --user carlos@acme.example)"
# The console: hr's knowledge manager manages a collection of their department.
if ! "$lore" --data-dir "$data" collections list | grep -qw hr-uploads; then
  "$lore" --data-dir "$data" collections create hr-uploads --name "HR uploads" --department hr --default-acl group:hr
fi
km_key="$("$lore" --data-dir "$data" keys create --name "demo-km-$(date +%s)" --role knowledge_manager --user alice@acme.example --groups hr --department hr)"
printf 'data_dir = "%s"\n[server]\nbind = "127.0.0.1:0"\n' "$(realpath "$data")" > "$workdir/lore.toml"
"$lore" --config "$workdir/lore.toml" serve --demo > "$workdir/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$workdir/serve.log" && break; sleep 0.2; done
url="$(sed -n 's/.*listening on //p' "$workdir/serve.log")"
echo "lore serve is listening on $url"
python3 - "$url" "$key" <<'PY'
import json, sys, urllib.request
url, key = sys.argv[1], sys.argv[2]
body = json.dumps({"question": "How many days of paid vacation do I get?"}).encode()
request = urllib.request.Request(url + "/v1/chat", data=body, headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
answer = json.load(urllib.request.urlopen(request))
print(f"POST {url}/v1/chat -> kind={answer['kind']}")
print(answer["answer"])
for citation in answer["citations"]:
    print(f"[{citation['marker']}] {citation['title']} ({citation['source_path']})")
PY

echo; echo "### The chat widget, embedded in a page by one <script> tag (public key: documents shared with everyone)"
echo "Demo page: $url/demo    Full-page chat: $url/  (API key for the full page: $key)"
echo; echo "### The console for knowledge managers: upload, ACLs, quality and analytics"
echo "Console: $url/#/console/documents  (knowledge-manager key for hr: $km_key)"
if [ -t 0 ] && [ "${LORE_DEMO_EXIT:-0}" != 1 ]; then
  echo "Serving until Ctrl-C."
  wait "$server_pid"
fi
