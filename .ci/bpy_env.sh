#!/usr/bin/env bash
# Blender test environments for Boost Depth: the system libraries the bpy wheels load, and one venv per Blender
# version (.venv-bpy42: Blender 4.2 LTS, the minimum supported; .venv-bpy50: Blender 5.0; .venv-bpy52: Blender 5.2,
# Python 3.13). Idempotent: a venv that already imports the right bpy is kept. Each wheel is ~1 GB from PyPI.
#
#   bash .ci/bpy_env.sh            # all three
#   bash .ci/bpy_env.sh 42         # only 4.2
#
# Then, per venv (the engine runs in its own interpreter, named by BOOST_DEPTH_TEST_ENGINE_PYTHON):
#   BOOST_DEPTH_TEST_ENGINE_PYTHON=$PWD/.venv/bin/python .venv-bpy42/bin/python -m pytest tests/blender
set -euo pipefail
cd "$(dirname "$0")/.."

PYTEST=pytest==9.2.0
declare -A WHEELS=(
  [42]="bpy==4.2.23 numpy==1.26.4"
  [50]="bpy==5.0.1 numpy==1.26.4"
  [52]="bpy==5.2.3 numpy==2.5.5"
)
declare -A PYTHONS=(  # the CPython each bpy wheel is built for
  [42]=3.11
  [50]=3.11
  [52]=3.13
)

find_python() {  # find_python 3.13 -> a working python3.13: on PATH, else one that pyenv installed
  local v=$1 candidate
  for candidate in "python$v" $(command -v pyenv >/dev/null && ls -d "$(pyenv root)"/versions/"$v"*/bin/python"$v" 2>/dev/null | sort -V | tail -1); do
    if "$candidate" -c "" 2>/dev/null; then echo "$candidate"; return; fi
  done
  echo "bpy_env: no Python $v found (install it, e.g. with pyenv)" >&2
  return 1
}
LIBS=(libx11-6 libxrender1 libxfixes3 libxi6 libxkbcommon0 libsm6 libice6 libxext6 libgl1 libegl1 libegl-mesa0
      libgl1-mesa-dri)

missing=()
for lib in "${LIBS[@]}"; do
  dpkg-query -W -f='${Status}' "$lib" 2>/dev/null | grep -q "install ok installed" || missing+=("$lib")
done
if ((${#missing[@]})); then
  echo "bpy_env: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

versions=("$@")
((${#versions[@]})) || versions=(42 50 52)
for v in "${versions[@]}"; do
  spec=${WHEELS[$v]:?unknown Blender version $v (choose from ${!WHEELS[*]})}
  venv=.venv-bpy$v
  want=$(sed -E 's/bpy==([^ ]+) numpy==([^ ]+)/\1 \2/' <<<"$spec")
  have=$(BLENDER_USER_RESOURCES=$(mktemp -d) "$venv/bin/python" - 2>/dev/null <<'PY' || true
import importlib.metadata as m, pytest, bpy
print(m.version("bpy"), m.version("numpy"))
PY
)
  if [[ "$have" == "$want" ]]; then
    echo "bpy_env: $venv has bpy, numpy $have"
    continue
  fi
  echo "bpy_env: creating $venv ($spec)"
  rm -rf "$venv"
  "$(find_python "${PYTHONS[$v]}")" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check $spec $PYTEST
done
