#!/bin/sh
# Install the unpacked Casebook bundle for this user (or, run as root, for everyone):
# the program folder, a menu entry with its icon, and `casebook` on the PATH.
#   ./install.sh            install (again: replaces the program, keeps the library and settings)
#   ./install.sh --user     install for this user even when run as root
#   ./install.sh --remove   uninstall (the library and settings stay where they are)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
user=0; action=install
for a in "$@"; do
  case "$a" in
    --user) user=1 ;;
    --remove) action=remove ;;
    *) echo "install.sh: unknown option $a (use --user, --remove)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" = 0 ] && [ $user = 0 ]; then
  prefix=/opt/casebook; share=/usr/share; bin=/usr/local/bin
else
  prefix=${XDG_DATA_HOME:-$HOME/.local/share}/casebook/app; share=${XDG_DATA_HOME:-$HOME/.local/share}; bin=$HOME/.local/bin
fi
remove() {
  rm -rf "$prefix" "$share/applications/casebook.desktop" "$bin/casebook"
  for s in 16 24 32 48 64 128 256 512; do rm -f "$share/icons/hicolor/${s}x${s}/apps/casebook.png"; done
  rm -f "$share/icons/hicolor/scalable/apps/casebook.svg"
}
if [ $action = remove ]; then remove; echo "Casebook removed (library and settings kept)"; exit 0; fi
[ -x "$here/casebook" ] || { echo "install.sh: run it from the unpacked casebook folder" >&2; exit 2; }
if [ "$here" != "$prefix" ]; then
  rm -rf "$prefix.new"; mkdir -p "$(dirname "$prefix")"
  cp -a "$here" "$prefix.new"
  rm -rf "$prefix"; mv "$prefix.new" "$prefix"
fi
mkdir -p "$share/applications" "$bin" "$share/icons/hicolor/scalable/apps"
sed -e "s#^Exec=casebook#Exec=$prefix/casebook#" -e "s#^TryExec=casebook#TryExec=$prefix/casebook#" \
  "$prefix/share/casebook.desktop" > "$share/applications/casebook.desktop"
for s in 16 24 32 48 64 128 256 512; do
  mkdir -p "$share/icons/hicolor/${s}x${s}/apps"
  cp "$prefix/share/icons/casebook-$s.png" "$share/icons/hicolor/${s}x${s}/apps/casebook.png"
done
cp "$prefix/share/icons/casebook.svg" "$share/icons/hicolor/scalable/apps/casebook.svg"
ln -sf "$prefix/casebook" "$bin/casebook"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$share/applications" || true
command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$share/icons/hicolor" || true
echo "Casebook installed in $prefix: start it from the applications menu, or run casebook"
echo "(check it with: casebook --self-test)"
