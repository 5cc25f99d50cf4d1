"""The installer's own tools, on real files: the CPU-baseline scan on real compiled modules (ours,
hnswlib, and one built here with AVX2 on purpose), the icons Qt renders for the platform
packages, and the Linux install script on a folder laid out like the bundle."""
from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALLER = REPO / "installer"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"installer_{name}", INSTALLER / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


check = _load("check_bundle")
linux_tools = pytest.mark.skipif(not (sys.platform.startswith("linux") and shutil.which("objdump")
                                      and shutil.which("readelf") and shutil.which("gcc")),
                                 reason="needs Linux binutils and gcc")


@linux_tools
def test_own_search_module_is_baseline_x86_64_with_guarded_avx2():
    """index/_hnswmap is built without -march=native: AVX2 only inside dot_avx2 (chosen at run time)."""
    import casebook.index._hnswmap as hm

    wide = check.wide_register_functions(Path(hm.__file__))
    assert wide, "the AVX2 kernel is missing: no run-time dispatch compiled in"
    fns = {fn for fn, _reg in wide}
    assert all(check.GUARDED.search(fn) for fn in fns), fns
    assert not any(reg == "zmm" for _fn, reg in wide)
    assert check.isa_needed(Path(hm.__file__)) in ("", "x86-64-baseline")


@linux_tools
def test_hnswlib_was_built_without_native_flags():
    import hnswlib

    assert not check.wide_register_functions(Path(hnswlib.__file__)), \
        "hnswlib uses AVX registers: rebuild it with HNSWLIB_NO_NATIVE=1 (scripts/setup.sh does)"


@linux_tools
def test_check_refuses_a_bundle_whose_module_was_built_for_avx2(tmp_path, capsys):
    """A module compiled with -mavx2 (what -march=native gives on this machine) fails the check,
    naming the function; the same source built for baseline x86-64 passes."""
    src = tmp_path / "k.c"
    src.write_text("void scale(float *a, const float *b, int n) { for (int i = 0; i < n; i++) a[i] = a[i] * 3.0f + b[i]; }\n")
    import casebook.index._hnswmap as hm
    import hnswlib

    def bundle(flags: list[str], name: str) -> Path:
        root = tmp_path / name
        internal = root / "_internal"
        (internal / "casebook" / "index").mkdir(parents=True)
        shutil.copy(hm.__file__, internal / "casebook" / "index" / Path(hm.__file__).name)
        subprocess.run(["gcc", "-O3", "-shared", "-fPIC", *flags, str(src), "-o",
                        str(internal / Path(hnswlib.__file__).name)], check=True)
        (root / "casebook").write_text("#!/bin/sh\n")
        return root

    bad = check.wide_register_functions(next((bundle(["-mavx2"], "avx") / "_internal").glob("hnswlib*.so")))
    assert any(fn == "scale" and reg == "ymm" for fn, reg in bad)
    capsys.readouterr()
    assert check.main([str(tmp_path / "avx")]) == 1
    failed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAILED")]
    assert any("hnswlib" in line and "scale" in line and "HNSWLIB_NO_NATIVE" in line for line in failed), failed
    good = bundle([], "base")
    assert not check.wide_register_functions(next((good / "_internal").glob("hnswlib*.so")))
    check.main([str(good)])  # fails too (no models in this fake bundle), but not on the CPU scan
    out = capsys.readouterr().out
    assert "no AVX instructions at all" in out and "_hnswmap" in out
    assert not any("scale" in line for line in out.splitlines() if line.startswith("FAILED"))


def test_icons_render_for_every_platform(tmp_path):
    out = tmp_path / "icons"
    r = subprocess.run([sys.executable, str(INSTALLER / "make_icons.py"), str(out)], capture_output=True, text=True,
                       env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, timeout=120)
    assert r.returncode == 0, r.stderr
    for s in (16, 48, 256, 512):
        data = (out / f"casebook-{s}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        w, h = struct.unpack(">II", data[16:24])
        assert (w, h) == (s, s)
    ico = (out / "casebook.ico").read_bytes()
    reserved, kind, count = struct.unpack("<HHH", ico[:6])
    assert (reserved, kind) == (0, 1) and count == 7  # 16..256 px
    sizes = [ico[6 + 16 * i] or 256 for i in range(count)]
    assert sizes == [16, 24, 32, 48, 64, 128, 256]
    assert len(list((out / "casebook.iconset").glob("icon_*.png"))) == 10  # what iconutil wants


def test_linux_install_script_installs_menu_entry_and_removes_it(tmp_path):
    """install.sh (shipped inside the Linux bundle) on a folder laid out like the bundle: the menu
    entry points at the installed program, icons are in the hicolor theme, casebook is on PATH;
    --remove takes it all away again."""
    bundle = tmp_path / "casebook"
    (bundle / "share" / "icons").mkdir(parents=True)
    exe = bundle / "casebook"
    exe.write_text("#!/bin/sh\necho casebook-bundle \"$@\"\n")
    exe.chmod(0o755)
    shutil.copy(INSTALLER / "install.sh", bundle / "install.sh")
    shutil.copy(INSTALLER / "casebook.desktop", bundle / "share" / "casebook.desktop")
    shutil.copy(REPO / "resources" / "icons" / "casebook.svg", bundle / "share" / "icons" / "casebook.svg")
    for s in (16, 24, 32, 48, 64, 128, 256, 512):
        (bundle / "share" / "icons" / f"casebook-{s}.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home)}
    cmd = ["sh", str(bundle / "install.sh"), "--user"]  # as root it would install in /opt for everyone
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    share = home / ".local" / "share"
    entry = (share / "applications" / "casebook.desktop").read_text()
    prog = share / "casebook" / "app" / "casebook"
    assert f"Exec={prog} gui %f" in entry and "Icon=casebook" in entry
    assert (share / "icons" / "hicolor" / "256x256" / "apps" / "casebook.png").is_file()
    assert (share / "icons" / "hicolor" / "scalable" / "apps" / "casebook.svg").is_file()
    link = home / ".local" / "bin" / "casebook"
    assert link.resolve() == prog.resolve()
    assert subprocess.run([str(link), "--version"], capture_output=True, text=True).stdout.startswith("casebook-bundle")
    r = subprocess.run([*cmd, "--remove"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not (share / "applications" / "casebook.desktop").exists() and not link.exists()
    assert not (share / "casebook" / "app").exists()
