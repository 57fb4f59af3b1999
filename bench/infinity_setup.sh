#!/usr/bin/env bash
# Create .venv-infinity/ (git-ignored) with infinity-emb, the peer server of bench/serving.py.
#
# infinity-emb pins older libraries than goldmine (transformers<5 through sentence-transformers<4,
# numpy<2, typer<0.13, uvicorn<0.33), so it lives in a venv of its own. Its torch requirement is
# torch>=2.2.1: the constraint below keeps the CPU build of torch 2.13.0 that goldmine uses, so both
# servers run the same torch. Re-running is cheap: a finished venv is kept (stamp file).
#
#   bash bench/infinity_setup.sh            # or: python bench/serving.py setup-infinity
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${INFINITY_VENV:-.venv-infinity}
VERSION=${INFINITY_VERSION:-0.0.78}
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.installed-$VERSION"
[ -f "$STAMP" ] && { echo "$VENV: infinity-emb $VERSION already installed"; exit 0; }
"$PYTHON" -m venv "$VENV"
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==2.13.0" > "$CONSTRAINTS"
"$VENV/bin/python" -m pip install --quiet -c "$CONSTRAINTS" "infinity-emb[server,torch]==$VERSION"
touch "$STAMP"
"$VENV/bin/python" -c "import infinity_emb, torch, transformers; print('infinity-emb', infinity_emb.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
