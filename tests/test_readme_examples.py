"""Every ``casebook`` command in the README's example blocks runs on a demo library.

Blocks marked ``<!-- readme-examples: demo library -->`` on the line before their opening fence
are run; ids, paths, slices and boxes in them are replaced by ones that exist in the small demo
library built here (found with ``casebook ls --json``, as a user would), so the examples keep
working when ids change, while an option or sub-command the CLI no longer has fails the test.
"""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from casebook.viewer.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
MARK = "<!-- readme-examples: demo library -->"
DEMO = ["--patients", "3", "--size", "96", "--slices", "16", "--big-slices", "0", "--no-samples"]


def readme_commands() -> list[str]:
    lines = README.read_text(encoding="utf-8").splitlines()
    out: list[str] = []
    for n, line in enumerate(lines):
        if line.strip() == MARK:
            assert lines[n + 1].startswith("```sh"), f"README line {n + 2}: the mark must precede a ```sh block"
            for body in lines[n + 2:]:
                if body.startswith("```"):
                    break
                if body.startswith("casebook "):
                    out.append(body)
    return out


@pytest.fixture(scope="module")
def demo_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    mp = pytest.MonkeyPatch()
    mp.setenv("CASEBOOK_CONFIG", str(root / "settings.toml"))
    mp.setenv("CASEBOOK_LIBRARY", str(root / "lib"))
    try:
        assert main(["demo", *DEMO]) == 0
    finally:
        mp.undo()
    return root


def _ids(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["ls", "--series", "--json", "--tag", "synthetic", "--modality", "CT"]) == 0
    series = json.loads(capsys.readouterr().out)
    axial = [s for s in series if s["description"].endswith(" AX")]
    query, *others = sorted(axial, key=lambda s: s["id"])
    return {"query": query, "others": [s["id"] for s in others]}


def _substitute(argv: list[str], ids: dict, library: Path) -> list[str]:
    query = ids["query"]
    others = list(ids["others"])
    dicom = library / "lib" / "demo-dicom" / "phantom"
    out: list[str] = []
    it = iter(range(len(argv)))
    for i in it:
        tok = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if tok == "--series" and nxt is not None:
            out += [tok, query["series_uid"] if not nxt.isdigit() else str(query["id"])]
        elif tok in ("--more-like", "--not-like") and nxt is not None:
            out += [tok, str(others.pop(0))]
        elif tok == "--slice" and nxt is not None:
            out += [tok, str(min(int(nxt), query["slice_count"] - 1))]
        elif tok == "--roi" and nxt is not None:
            k = query["slice_count"]
            out += [tok, f"{k // 4},{3 * k // 4},20,70,20,70"]
        elif tok == "--folder" and nxt is not None:
            out += [tok, str(next(p for p in sorted(dicom.glob("*/*")) if p.is_dir()))]
        else:
            out.append(tok)
            continue
        next(it)
    if out and out[0] == "ingest":  # ingest's PATHs: the demo's own DICOM folders
        out = ["ingest", str(dicom), *[t for t in out[1:] if t.startswith("-")]]
    return out


def test_readme_lists_runnable_examples() -> None:
    cmds = readme_commands()
    assert any(c.startswith("casebook search --series") for c in cmds)
    assert any("--roi" in c for c in cmds) and any(c.startswith("casebook ingest") for c in cmds)
    # the search examples say where their ids come from
    assert re.search(r"casebook ls --series", README.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_every_readme_example_runs_on_the_demo_library(demo_library: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CASEBOOK_CONFIG", str(demo_library / "settings.toml"))
    monkeypatch.setenv("CASEBOOK_LIBRARY", str(demo_library / "lib"))
    ids = _ids(capsys)
    failures = []
    for line in readme_commands():
        argv = _substitute(shlex.split(line, comments=True)[1:], ids, demo_library)
        rc = main(argv)
        out, err = capsys.readouterr()
        if rc != 0 or "Traceback" in err or "internal error" in err:
            failures.append(f"{line}\n  ran as: casebook {shlex.join(argv)}\n  exit {rc}: {err.strip()[-600:]}")
        elif argv[0] == "search":
            assert "similar cases for" in out, line
    assert not failures, "\n".join(failures)
