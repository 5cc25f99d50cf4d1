#!/usr/bin/env bash
# Build the Linux one-folder bundle, check it, pack it, and try it like a fresh PC would.
#   installer/build_linux.sh             CPU bundle: build/installer/dist/casebook + tarball
#   installer/build_linux.sh --gpu       also ship onnxruntime's CUDA provider (needs CUDA 12/cuDNN on the PC)
#   installer/build_linux.sh --no-try    skip the self-test run of the copied bundle (no display needed)
# Output: build/installer/dist/casebook/ (the folder: casebook, _internal/, install.sh, share/),
# build/installer/casebook-VERSION-linux-x86_64.tar.gz, and an AppImage when appimagetool is on PATH.
# Prints the bundle size and the cold start to the first window. Nothing is downloaded but the
# build tools (pip install of the `bundle` extra); nothing is cached between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
gpu=0; try=1
for a in "$@"; do
  case "$a" in
    --gpu) gpu=1 ;;
    --no-try) try=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
PY=.venv/bin/python
[ -x "$PY" ] || scripts/setup.sh
B=build/installer
t_start=$(date +%s)
rm -rf "$B"
mkdir -p "$B"
export PYINSTALLER_CONFIG_DIR="$PWD/$B/pyinstaller-cache"  # PyInstaller's binary cache: per build, never reused
# the build tools: the `bundle` extra of pyproject.toml
mapfile -t tools < <("$PY" -c 'import tomllib; [print(r) for r in tomllib.load(open("pyproject.toml","rb"))["project"]["optional-dependencies"]["bundle"]]')
"$PY" -m pip install -q --no-cache-dir "${tools[@]}"
version=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')

echo "== staging a normal install of Casebook $version (the compiled search module built for baseline x86-64)"
# no -march=native from the environment: the bundle must run on any x86-64 CPU
env -u CFLAGS -u CXXFLAGS -u CPPFLAGS HNSWLIB_NO_NATIVE=1 \
  "$PY" -m pip install -q --no-deps --no-build-isolation --no-compile --target "$B/stage" .
ls "$B"/stage/casebook/index/_hnswmap.* >/dev/null

echo "== icons"
"$PY" installer/make_icons.py "$B/icons"

echo "== PyInstaller (one folder)"
t_pi=$(date +%s)
CASEBOOK_STAGE="$PWD/$B/stage" CASEBOOK_GPU=$gpu CASEBOOK_ICONS="$PWD/$B/icons" PYTHONPATH="$PWD/$B/stage" \
  "$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
  --workpath "$B/work" --distpath "$B/dist" installer/casebook.spec 2>&1 \
  | grep -v -E "Library not found: could not resolve '(libcu|libnv|libcudnn)" || true
D="$B/dist/casebook"
[ -x "$D/casebook" ] || { echo "build_linux: PyInstaller produced no $D/casebook" >&2; exit 1; }
echo "PyInstaller: $(( $(date +%s) - t_pi )) s"

# VTK's wheels carry their symbol tables (a third of their size); the loader does not need them.
find "$D/_internal/vtkmodules" -name '*.so' -type f -exec strip --strip-unneeded {} +

# desktop integration inside the folder; install.sh puts it in place on the reader's PC
mkdir -p "$D/share/icons"
cp installer/casebook.desktop "$D/share/casebook.desktop"
cp resources/icons/casebook.svg "$D/share/icons/casebook.svg"
for s in 16 24 32 48 64 128 256 512; do cp "$B/icons/casebook-$s.png" "$D/share/icons/"; done
cp installer/install.sh "$D/install.sh"
cat > "$D/README.txt" <<TXT
Casebook $version for Linux (x86-64)

Run ./install.sh to add Casebook to the applications menu (as root: for every user, in /opt),
or start ./casebook directly. ./casebook --self-test checks this installation.
The library and settings live in your home folder and survive upgrades and ./install.sh --remove.
TXT

echo "== checks"
"$PY" installer/check_bundle.py "$D" --json "$B/check.json"

echo "== packing"
t_pack=$(date +%s)
name="casebook-$version-linux-x86_64"
gz=gzip; command -v pigz >/dev/null && gz=pigz
tar -C "$B/dist" --transform "s,^casebook,$name," -cf - casebook | $gz -6 > "$B/$name.tar.gz"
echo "tarball: $B/$name.tar.gz, $(du -m "$B/$name.tar.gz" | cut -f1) MB ($(( $(date +%s) - t_pack )) s)"
if command -v appimagetool >/dev/null; then
  app="$B/Casebook.AppDir"
  rm -rf "$app"; mkdir -p "$app/usr"
  cp -a "$D" "$app/usr/casebook"
  ln -s usr/casebook/casebook "$app/AppRun"
  cp installer/casebook.desktop "$app/casebook.desktop"
  cp "$B/icons/casebook-256.png" "$app/casebook.png"
  ARCH=x86_64 appimagetool --no-appstream "$app" "$B/$name.AppImage" >/dev/null
  echo "AppImage: $B/$name.AppImage"
else
  echo "AppImage: skipped (appimagetool not on PATH); the tarball is the Linux package"
fi
echo "bundle: $D, $(du -sm "$D" | cut -f1) MB on disk; built in $(( $(date +%s) - t_start )) s"

if [ $try = 1 ]; then
  echo "== self-test of a copy, no project Python visible"
  if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
    "$PY" installer/try_bundle.py "$D" --json "$B/try.json"
  else
    xvfb-run -a -s "-screen 0 1600x1000x24" "$PY" installer/try_bundle.py "$D" --json "$B/try.json"
  fi
fi
