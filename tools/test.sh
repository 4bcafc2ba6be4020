#!/usr/bin/env bash
# The project's test command: the library and README match the notebooks, the notebooks are clean, every notebook's
# fast path runs once (tools/docs.py executes each exactly as `nbdev_test` does, failing the same way, and renders the
# executed notebooks to the offline docs site in _site/), then pytest runs tests/ (its summary line is the last line),
# including the browser tests of JupyterLab and of that site.
set -euo pipefail
cd "$(dirname "$0")/.."
before=$(git status --porcelain -- nbs clvq_nb README.md 2>/dev/null || true)
nbdev_export
nbdev_clean
python tools/readme.py
after=$(git status --porcelain -- nbs clvq_nb README.md 2>/dev/null || true)
if [ "$before" != "$after" ]; then
  echo "nbdev_export / nbdev_clean / tools/readme.py changed files: the library, README or notebooks were out of step:"
  git status --short -- nbs clvq_nb README.md
  git diff --stat -- nbs clvq_nb README.md
  exit 1
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python tools/docs.py --n_workers "${NBDEV_WORKERS:-1}" --timing
python -m pytest -q tests
