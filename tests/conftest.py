"""Shared fixtures: where the shared imaging data lives, temporary libraries.

Tests that need ``../shared/data`` skip with a reason when it is absent, except under
``CI=true`` where its absence is a failure (CI always has it beside the clone).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# A subscriber that raises is a bug: under the tests the view-state emitter re-raises it into the
# code that drove the event (pytest-qt then fails the test), instead of logging and going on.
# Subprocesses the tests start (the CLI, the demo) inherit it.
os.environ.setdefault("CASEBOOK_STRICT_EVENTS", "1")


def _shared_root() -> Path | None:
    env = os.environ.get("CASEBOOK_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared")
    for c in candidates:
        if (c / "data").is_dir():
            return c / "data"
    return None


SHARED_DATA = _shared_root()


def require_shared(*parts: str) -> Path:
    """Path inside the shared data; skip (or fail under CI) when it is not there."""
    if SHARED_DATA is None or not SHARED_DATA.joinpath(*parts).exists():
        where = "/".join(parts) or "data"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"shared data {where} is missing under CI (set CASEBOOK_SHARED)")
        pytest.skip(f"shared data {where} not found (set CASEBOOK_SHARED or put shared/ beside the repo)")
    return SHARED_DATA.joinpath(*parts)


def package_sample(name: str) -> Path:
    """A sample file shipped by pydicom-data (``data_store``) or pydicom itself, by file name."""
    import importlib.util

    for pkg, sub in (("data_store", "data"), ("pydicom", "data/test_files")):
        spec = importlib.util.find_spec(pkg)
        if spec is not None and spec.submodule_search_locations:
            p = Path(list(spec.submodule_search_locations)[0]) / sub / name
            if p.is_file():
                return p
    pytest.skip(f"{name} not installed (pydicom-data is in the test extra)")


@pytest.fixture(scope="session")
def sample_file():
    """``sample_file("US1_UNCR.dcm")`` -> Path of a pydicom/pydicom-data sample (see package_sample)."""
    return package_sample


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared()


@pytest.fixture
def library_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty library folder that the settings point at, so nothing touches the user's."""
    lib = tmp_path / "library"
    monkeypatch.setenv("CASEBOOK_LIBRARY", str(lib))
    monkeypatch.setenv("CASEBOOK_CONFIG", str(tmp_path / "settings.toml"))
    return lib


@pytest.fixture(scope="session")
def need_shared():
    """``need_shared("dicom", "dcm_qa_ct")`` -> Path, skipping (failing under CI) when absent."""
    return require_shared


# --- Gates that keep the suite honest -------------------------------------------------------
#
# 1. Under CI=true a skipped test is a failure, unless it carries ``@pytest.mark.ci_may_skip(
#    reason=...)`` naming why CI cannot run it: CI installs everything the suite needs, so a skip
#    there means a missing install step, not a missing feature.
# 2. (With the strict events above.) An ERROR (or CRITICAL) log record from a ``casebook.*`` logger fails the test that caused
#    it, unless the test is marked ``@pytest.mark.allows_error_log`` (a test of the error path
#    itself). Casebook logs at ERROR only for bugs and for failures the user must see, so a
#    record nobody expected is a bug that would otherwise stay green.

_UNDER_CI = os.environ.get("CI", "").lower() == "true"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ci_may_skip(reason): CI may skip this test, for the reason given")
    config.addinivalue_line("markers", "allows_error_log: the test expects ERROR records from casebook loggers")


def _skip_to_failure(report, reason: str) -> None:
    report.outcome = "failed"
    report.longrepr = f"skipped under CI=true, which must run every test: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if not (_UNDER_CI and report.skipped) or hasattr(report, "wasxfail"):
        return
    marker = item.get_closest_marker("ci_may_skip")
    if marker is not None and marker.kwargs.get("reason"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    _skip_to_failure(report, reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    outcome = yield
    report = outcome.get_result()
    if _UNDER_CI and report.skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        _skip_to_failure(report, f"{collector.nodeid}: {reason}")


class _ErrorRecords(logging.Handler):
    """Collects ERROR records of the ``casebook`` logger tree during one test."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def _fail_on_casebook_error_log(request: pytest.FixtureRequest):
    handler = _ErrorRecords()
    root = logging.getLogger("casebook")
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
    if handler.records and request.node.get_closest_marker("allows_error_log") is None:
        lines = []
        for r in handler.records[:5]:
            text = f"{r.name}: {r.getMessage()}"
            if r.exc_info and r.exc_info[1] is not None:
                text += f" ({type(r.exc_info[1]).__name__}: {r.exc_info[1]})"
            lines.append(text)
        pytest.fail("ERROR log record(s) from casebook during the test (a swallowed bug?):\n  " + "\n  ".join(lines),
                    pytrace=False)
