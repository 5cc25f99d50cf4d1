#!/usr/bin/env bash
# One-shot set-up on a fresh Debian machine (root, Python 3.11): system packages, a virtualenv in
# .venv with Casebook installed editable. Safe to run again: it only installs what is missing.
#   scripts/setup.sh          runtime only
#   scripts/setup.sh --test   also test tools, dcm2niix, Xvfb
#   scripts/setup.sh --train  also the CPU build of torch for training encoders
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0; want_train=0
for a in "$@"; do
  case "$a" in
    --test) want_test=1 ;;
    --train) want_train=1 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done

apt_pkgs=(libgl1 libegl1 libglx-mesa0 libosmesa6 libxkbcommon0 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4
  libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-xinerama0 libxcb-xkb1 libxcb-shape0
  libxcb-randr0 libxcb-xfixes0 libdbus-1-3 libfontconfig1 libxrender1 libxi6 libsm6 libice6 fonts-dejavu-core)
[ $want_test = 1 ] && apt_pkgs+=(xvfb xauth dcm2niix x11-utils)
# PACS tests and benchmarks/pacs.py: a real Orthanc with DICOMweb, and dcmtk's movescu/storescu as the baseline.
[ $want_test = 1 ] && apt_pkgs+=(orthanc orthanc-dicomweb dcmtk)
# hnswlib and Casebook's _hnswmap module compile from source: a C++ compiler and Python headers.
command -v g++ >/dev/null 2>&1 || apt_pkgs+=(g++)
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
inc=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("include"))' 2>/dev/null || true)
[ -n "$inc" ] && [ ! -f "$inc/Python.h" ] && apt_pkgs+=("$(basename "$PY")-dev")
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing system packages (install as root): ${missing[*]}" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
extras=""
[ $want_test = 1 ] && extras="test"
[ $want_train = 1 ] && extras="${extras:+$extras,}train"
stamp=".venv/.casebook-installed-${extras:-base}"
stale=0
for f in pyproject.toml setup.py index/_hnswmap.cpp; do [ "$f" -nt "$stamp" ] && stale=1; done
ls index/_hnswmap.*.so >/dev/null 2>&1 || stale=1  # the compiled search module (built in place)
if [ ! -f "$stamp" ] || [ $stale = 1 ]; then
  .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
  # hnswlib ships no wheels; without this it compiles with -march=native and crashes on older CPUs.
  HNSWLIB_NO_NATIVE=1 .venv/bin/python -m pip install -q "pybind11>=2.10" numpy
  HNSWLIB_NO_NATIVE=1 .venv/bin/python -m pip install -q --no-build-isolation -e ".${extras:+[$extras]}"
  touch "$stamp"
fi
