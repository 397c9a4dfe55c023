#!/usr/bin/env bash
# The hostile-folder suite and the runtime's pipeline tests on the lowest onnxruntime
# pyproject.toml allows (its `onnxruntime>=X` floor), so that the floor is a tested
# version, not a guess. Exports are made with it too and checked against PyTorch; the
# tests that count fused operators are left out: which fusions onnxruntime's optimizer
# finds depends on its version (the README's figures are onnxruntime 1.32's).
#
#   scripts/lowest_ort.sh [PYTEST ARGS]
#
# The floor's venv is layered over the main one ($VENV, default .venv): it holds only
# onnxruntime==X, and a .pth file puts the main venv's packages (torch, transformers,
# edgelm itself, editable) behind it. It lives in $VENV/ort-floor-X and is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
MAIN=${VENV:-.venv}
FLOOR=$(sed -n 's/^ *"onnxruntime>=\([0-9.]*\)".*/\1/p' pyproject.toml | head -1)
[ -n "$FLOOR" ] || { echo "no onnxruntime>= floor in pyproject.toml" >&2; exit 1; }
LAYER=$MAIN/ort-floor-$FLOOR
if [ ! -x "$LAYER/bin/python" ]; then
  "$MAIN/bin/python" -m venv "$LAYER"
  "$LAYER/bin/python" -m pip install -q --no-deps "onnxruntime==$FLOOR"
  site=$("$LAYER/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  main_site=$(cd "$("$MAIN/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" && pwd)
  echo "import site; site.addsitedir('$main_site')" > "$site/edgelm-main-venv.pth"
fi
version=$("$LAYER/bin/python" -c 'import onnxruntime; print(onnxruntime.__version__)')
[ "$version" = "$FLOOR" ] || { echo "the floor venv runs onnxruntime $version, not $FLOOR" >&2; exit 1; }
echo "onnxruntime $version (pyproject.toml's floor)"
export EDGELM_EXPECT_ORT=$FLOOR HF_HUB_OFFLINE=1
exec "$LAYER/bin/python" -m pytest -q \
  tests/test_hostile_folders.py tests/test_hostile_manifests.py tests/test_hostile_inputs.py \
  tests/test_torch_free.py tests/test_errors.py tests/test_streaming.py \
  tests/test_generation_parity.py tests/test_export_encoders.py \
  -m "not slow and not gpu and not edge and not ort_fusions" "$@"
