"""``casebook --self-test`` in the real window under Xvfb: every step passes on a working install,
and a broken one stops at the step that failed, naming it, with a non-zero exit."""
from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

pytestmark = [pytest.mark.gui, pytest.mark.slow]


def _run(args, tmp_path, **env):
    """The self-test in its own process, as a user starts it: it sets up a QApplication, a theme and
    Qt's settings path of its own, which must not leak into the other tests of this process."""
    e = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), **env}
    p = subprocess.run([sys.executable, "-m", "casebook.viewer.cli", *args], env=e, capture_output=True,
                       text=True, timeout=900)
    return p.returncode, SimpleNamespace(out=p.stdout, err=p.stderr)


def test_self_test_passes_every_step_and_leaves_no_trace(tmp_path):
    from casebook.viewer.qt.self_test import STEPS

    (tmp_path / "tmp").mkdir()
    rc, out = _run(["--self-test"], tmp_path, TMPDIR=str(tmp_path / "tmp"))
    assert rc == 0, out.out + out.err
    lines = out.out.splitlines()
    for name in STEPS:
        assert any(line.split()[:2] == ["ok", name] for line in lines), (name, out.out)
    window = next(line for line in lines if line.split()[:2] == ["ok", "window"])
    assert "s after the process started" in window and "OpenGL" in window
    assert "13 series stored" in out.out or "series stored" in out.out
    assert "similar series shown as cards" in out.out
    assert "JPEG 2000 lossless copy of a CT series" in out.out
    assert lines[-1].startswith(f"self-test passed: {len(STEPS)} steps")
    assert not list((tmp_path / "tmp").iterdir())  # the throwaway library is gone
    assert not (tmp_path / "xdg" / "casebook").exists()  # the user's settings were not written


def test_self_test_names_the_failed_step_and_stops(tmp_path):
    """The library folder cannot be created (a file is in the way): the import step fails with the
    store's own message, the later steps are reported as not run, the exit status is 1."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "library").write_text("not a folder")
    rc, out = _run(["self-test", "--keep", str(work)], tmp_path)
    assert rc == 1
    lines = out.out.splitlines()
    assert any(line.split()[:2] == ["ok", "library"] for line in lines)
    failed = [line for line in lines if line.split()[:2] == ["FAILED", "import"]]
    assert failed and "library" in failed[0]
    assert "not run: open, search, slice, 3d" in out.out
    assert "casebook self-test: step import failed:" in out.err
    assert (work / "dicom").is_dir()  # --keep keeps the work folder for a look


def test_self_test_flag_takes_no_command(capsys):
    from casebook.viewer.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--self-test", "ls"])
    assert e.value.code == 2 and "--self-test takes no command" in capsys.readouterr().err


def test_window_start_parses_without_the_other_commands():
    """`casebook`, `casebook gui`, `--self-test` parse with the window's commands only (the others
    import the case store before the first window); help, version and other commands see all."""
    from casebook.viewer.cli import _opens_window

    for argv in ([], ["gui"], ["-v", "--library", "/x", "gui", "/data"], ["--self-test"], ["self-test", "--keep", "/k"],
                 ["--library", "ls"]):
        assert _opens_window(argv), argv
    for argv in (["ls"], ["--help"], ["gui", "-h"], ["--version"], ["--self-test", "ls"], ["-v", "ingest", "/x"]):
        assert not _opens_window(argv), argv
