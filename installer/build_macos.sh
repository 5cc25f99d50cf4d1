#!/usr/bin/env bash
# Build the macOS application: Casebook.app (PyInstaller one-folder inside an .app bundle) and a
# drag-to-Applications disk image casebook-VERSION-macos-ARCH.dmg.
#   installer/build_macos.sh [--no-try]
# Needs on the build Mac: Python 3.11 (python.org or Homebrew), the Xcode command line tools
# (clang for hnswlib and Casebook's search module; iconutil, codesign, hdiutil). Built for the
# Mac's own architecture (arm64 or x86_64). Signing: CASEBOOK_CODESIGN_ID="Developer ID
# Application: ..." signs with the hardened runtime (default: ad-hoc, for this Mac and testing);
# CASEBOOK_NOTARY_PROFILE=<notarytool keychain profile> also notarises and staples the image.
set -euo pipefail
cd "$(dirname "$0")/.."
try=1
for a in "$@"; do
  case "$a" in
    --no-try) try=0 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done
PY=.venv/bin/python
export HNSWLIB_NO_NATIVE=1  # hnswlib would otherwise compile for this Mac's CPU only
unset CFLAGS CXXFLAGS CPPFLAGS
if [ ! -x "$PY" ]; then
  python3.11 -m venv .venv
  "$PY" -m pip install -q --upgrade pip setuptools wheel "pybind11>=2.10" numpy
  "$PY" -m pip install -q --no-build-isolation -e .
fi
B=build/installer
rm -rf "$B"; mkdir -p "$B"
export PYINSTALLER_CONFIG_DIR="$PWD/$B/pyinstaller-cache"
tools=()
while IFS= read -r line; do tools+=("$line"); done < <("$PY" -c 'import tomllib; [print(r) for r in tomllib.load(open("pyproject.toml","rb"))["project"]["optional-dependencies"]["bundle"]]')
"$PY" -m pip install -q --no-cache-dir "${tools[@]}"
version=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
arch=$(uname -m)

echo "== staging Casebook $version ($arch)"
"$PY" -m pip install -q --no-deps --no-build-isolation --no-compile --target "$B/stage" .
echo "== icons"
"$PY" installer/make_icons.py "$B/icons"
iconutil -c icns "$B/icons/casebook.iconset" -o "$B/icons/casebook.icns"

echo "== PyInstaller (one folder, .app)"
CASEBOOK_STAGE="$PWD/$B/stage" CASEBOOK_ICONS="$PWD/$B/icons" CASEBOOK_VERSION="$version" PYTHONPATH="$PWD/$B/stage" \
  "$PY" -m PyInstaller --noconfirm --clean --log-level WARN --workpath "$B/work" --distpath "$B/dist" installer/casebook.spec
APP="$B/dist/Casebook.app"
[ -x "$APP/Contents/MacOS/casebook" ] || { echo "build_macos: no $APP" >&2; exit 1; }

echo "== signing"
if [ -n "${CASEBOOK_CODESIGN_ID:-}" ]; then
  codesign --force --deep --options runtime --timestamp -s "$CASEBOOK_CODESIGN_ID" "$APP"
else
  codesign --force --deep -s - "$APP"  # ad hoc: runs on this Mac; others need a Developer ID
fi
codesign --verify --deep --strict "$APP"

echo "== checks"
"$PY" installer/check_bundle.py "$B/dist/casebook" --json "$B/check.json"
if [ $try = 1 ]; then
  "$PY" installer/try_bundle.py "$APP" --json "$B/try.json"
fi

echo "== disk image"
dmg="$B/casebook-$version-macos-$arch.dmg"
stage_dmg="$B/dmg"
rm -rf "$stage_dmg"; mkdir -p "$stage_dmg"
cp -R "$APP" "$stage_dmg/"
ln -s /Applications "$stage_dmg/Applications"
hdiutil create -volname "Casebook $version" -srcfolder "$stage_dmg" -ov -format UDZO "$dmg" >/dev/null
if [ -n "${CASEBOOK_NOTARY_PROFILE:-}" ]; then
  codesign -s "$CASEBOOK_CODESIGN_ID" --timestamp "$dmg"
  xcrun notarytool submit "$dmg" --keychain-profile "$CASEBOOK_NOTARY_PROFILE" --wait
  xcrun stapler staple "$dmg"
fi
echo "app: $APP ($(du -sm "$APP" | cut -f1) MB); disk image: $dmg ($(du -m "$dmg" | cut -f1) MB)"
