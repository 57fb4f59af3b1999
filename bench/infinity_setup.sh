#!/usr/bin/env bash
# Create .venv-infinity/ (git-ignored) with infinity-emb, the peer server of bench/serving.py, with its torch and
# its ONNX (`--engine optimum`) engines.
#
# infinity-emb pins older libraries than goldmine (transformers<5 through sentence-transformers<4,
# numpy<2, typer<0.13, uvicorn<0.33), so it lives in a venv of its own. Its torch requirement is
# torch>=2.2.1: the constraint below keeps the CPU build of torch 2.13.0 that goldmine uses, so both
# servers run the same torch. The `optimum` extra (optimum[onnxruntime]>=1.24) resolves to optimum 2.x with
# optimum-onnx and onnxruntime wheels (no compiling). optimum 1.x is not an option with this torch: its ONNX
# exporter imports torch.onnx internals that torch 2.13 no longer has, and its BetterTransformer import wants
# transformers<4.49. Re-running is cheap: a finished venv is kept (stamp file, one per version and extras).
#
#   bash bench/infinity_setup.sh            # or: python bench/serving.py setup-infinity
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${INFINITY_VENV:-.venv-infinity}
VERSION=${INFINITY_VERSION:-0.0.78}
EXTRAS=server,torch,optimum
PYTHON=${PYTHON:-python3}
STAMP="$VENV/.installed-$VERSION-${EXTRAS//,/-}"
[ -f "$STAMP" ] && { echo "$VENV: infinity-emb[$EXTRAS] $VERSION already installed"; exit 0; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==2.13.0" > "$CONSTRAINTS"
"$VENV/bin/python" -m pip install --quiet --only-binary :all: -c "$CONSTRAINTS" "infinity-emb[$EXTRAS]==$VERSION"
touch "$STAMP"
"$VENV/bin/python" -c "import infinity_emb, torch, transformers, optimum.onnxruntime, onnxruntime; print('infinity-emb', infinity_emb.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__, 'onnxruntime', onnxruntime.__version__)"
