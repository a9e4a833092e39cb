#!/usr/bin/env bash
# Prepare .gpu/ for running the GPU check on a machine that has torch but not pydantic and no
# network (run this here, then carry .gpu/ along with the repository):
#   .gpu/wheels/   pydantic, pydantic-core (CPython 3.12, manylinux x86_64), annotated-types,
#                  typing-inspection, typing-extensions: ltsearch's spec needs them
#   .gpu/data/fashion-mnist/   the Fashion-MNIST idx files for the real-data check
# Wheels are taken from local wheel folders (pip's find-links, /opt/pypi/files) when they are
# there; pydantic-core for the target Python is fetched with `pip download` otherwise. The target
# Python: GPU_PYTHON (default 3.12). .gpu/ is ignored by git (.gitignore).
set -euo pipefail
cd "$(dirname "$0")/.."
PYV="${GPU_PYTHON:-3.12}"
TAG="cp${PYV/./}"
OUT=.gpu/wheels
mkdir -p "$OUT" .gpu/data
CORE=$(python3 -c "import importlib.metadata as m; print(m.requires('pydantic') and [r.split('==')[1].split(';')[0].strip() for r in m.requires('pydantic') if r.startswith('pydantic-core==')][0])")
PYD=$(python3 -c "import pydantic; print(pydantic.VERSION)")
DIRS=(/opt/wheels /opt/pypi/files "$HOME/.cache/pip/wheels")
find_wheel() {  # $1: file name glob
  for d in "${DIRS[@]}"; do
    [ -d "$d" ] || continue
    f=$(find "$d" -name "$1" 2>/dev/null | sort -V | tail -1)
    [ -n "$f" ] && { cp "$f" "$OUT/"; echo "  $(basename "$f") (from $d)"; return 0; }
  done
  return 1
}
echo "wheels for Python $PYV into $OUT:"
find_wheel "pydantic-${PYD}-py3-none-any.whl" || python3 -m pip download -q --no-deps -d "$OUT" "pydantic==$PYD"
for name in annotated_types typing_inspection typing_extensions; do
  find_wheel "${name}-*-py3-none-any.whl" || python3 -m pip download -q --no-deps -d "$OUT" "${name//_/-}"
done
find_wheel "pydantic_core-${CORE}-${TAG}-${TAG}-manylinux*x86_64*.whl" || \
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$OUT" "pydantic-core==$CORE"
FM=/usr/share/datasets/fashion-mnist
if [ -d "$FM" ]; then
  mkdir -p .gpu/data/fashion-mnist && cp "$FM"/*-ubyte* .gpu/data/fashion-mnist/
  echo "Fashion-MNIST copied into .gpu/data/fashion-mnist"
else
  echo "no $FM: the Fashion-MNIST check will report the missing files (apt-get install dataset-fashion-mnist)"
fi
ls -l "$OUT"; du -sh .gpu
