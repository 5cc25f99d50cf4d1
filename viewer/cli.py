"""The ``casebook`` command.

Sub-commands live in ``casebook.viewer.commands``; each module there exposes
``register(subparsers)``. ``casebook`` with no sub-command opens the reading-room application.

Every sub-command runs through :func:`run_command`, the one place that turns outcomes into exit
codes and messages, so all commands behave alike for a script or a hospital's job scheduler:

====  =====================================================================================
0     done
1     done, but something was reported (``doctor`` found a problem, ``embed`` skipped series)
2     refused: bad arguments or settings, missing library or file, unreadable DICOM, invalid
      model... One line on stderr, ``casebook COMMAND: what and where``.
70    internal error (a bug): one line naming the exception; ``-vv`` prints the traceback
130   cancelled (Ctrl-C): the operation stopped through its cancel token; what it had stored
      is kept, and running the same command again resumes
====  =====================================================================================

The global options (``-v``, ``--library``) are accepted before and after the sub-command.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from typing import Sequence

from casebook.common.errors import Cancelled, CasebookError
from casebook.common.progress import CancelToken

from .commands._console import sigint_cancels

log = logging.getLogger("casebook.cli")

# Sub-command modules, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "ingest",
    "ls",
    "info",
    "audit",
    "search",
    "train_encoder",
    "model",
    "doctor",
    "check",
    "embed",
    "reports",
    "study",
    "demo",
    "gui",
    "pacs",
    "web",
    "self_test",
    "priors",
    "register",
    "teach",
)

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_ERROR = 2
EXIT_INTERNAL = 70
EXIT_CANCELLED = 130


def _version() -> str:
    import importlib.metadata as md

    try:
        return md.version("casebook")
    except md.PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Below the top level the defaults are SUPPRESSed, so an option given before the sub-command
    # is not reset by the sub-parser's default.
    default = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    parser.add_argument("-v", "--verbose", action="count", default=default(0),
                        help="more log output (-v info, -vv debug and tracebacks)")
    parser.add_argument("--library", metavar="DIR", default=default(None),
                        help="library folder for this command (overrides settings and CASEBOOK_LIBRARY)")


def _sub_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sp in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                out.append(sp)
                out.extend(_sub_parsers(sp))
    return out


# What `casebook` (the window) and `casebook --self-test` need: parsing for them loads only these
# modules, because the other commands' modules import the case store, SQLAlchemy and alembic,
# seconds on a slow reading-room PC before the first window could appear.
WINDOW_COMMANDS: tuple[str, ...] = ("gui", "self_test")


def _opens_window(argv: Sequence[str]) -> bool:
    """True when ``argv`` opens the window (no command, ``gui``, ``self-test``, ``--self-test``)
    and asks for no help or version (those list every command)."""
    words = list(argv)
    if any(a in ("-h", "--help", "--version") for a in words):
        return False
    i = 0
    while i < len(words):
        a = words[i]
        if a == "--library":
            i += 2
            continue
        if not a.startswith("-"):
            return a in ("gui", "self-test")
        i += 1
    return True


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="casebook",
        description="Casebook: DICOM viewer with offline similar-case search. Without a command it "
                    "opens the reading-room window.",
        epilog="exit codes: 0 done, 1 done with problems reported, 2 refused (a one-line reason on "
               "stderr), 70 internal error, 130 cancelled. Settings: see `casebook doctor` and the "
               "README's Settings section.")
    parser.add_argument("--version", action="version", version=f"casebook {_version()}")
    parser.add_argument("--self-test", action="store_true",
                        help="check this installation (same as `casebook self-test`) and exit")
    _add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        module = importlib.import_module(f"casebook.viewer.commands.{name}")
        module.register(sub)
    for sp in _sub_parsers(parser):
        _add_global_options(sp, top=False)
    return parser


class _CurrentStderr(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is now (a live progress display or a test
    capture may have replaced it since logging was configured)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001
        pass


def configure_logging(verbose: int) -> None:
    """WARNING by default, INFO with -v, DEBUG with -vv; Python warnings go through logging once
    (pydicom both warns and logs some problems: without this each printed twice)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, _CurrentStderr):
            root.removeHandler(h)
    handler = _CurrentStderr()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    if verbose < 1:
        # Odd or deliberately broken files make pydicom log (and warn about) per-file parsing and
        # decoder details, tracebacks included; Casebook reports each such file itself, with the
        # reason, so these only show with -v. A filter on the handler, because pydicom resets its
        # logger's level when it is imported.
        handler.addFilter(_quiet_pydicom)
        warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")


def _quiet_pydicom(record: logging.LogRecord) -> bool:
    return not (record.name == "pydicom" or record.name.startswith("pydicom.")) or record.levelno >= logging.CRITICAL


def run_command(args: argparse.Namespace) -> int:
    """Run ``args.func`` and map its outcome to an exit code and at most one line on stderr."""
    name = getattr(args, "command", None) or "casebook"
    prefix = f"casebook {name}"
    verbose = getattr(args, "verbose", 0)
    token = CancelToken()
    args.cancel = token
    try:
        from .core.config import check_environment

        check_environment()
        if getattr(args, "cancellable", False):
            with sigint_cancels(token, f"{prefix}: stopping at the next safe point"):
                rc = args.func(args)
        else:
            rc = args.func(args)
        if token.is_set() and rc != EXIT_CANCELLED:
            print(f"{prefix}: cancelled; what was stored is kept (run the same command again to resume)",
                  file=sys.stderr)
            return EXIT_CANCELLED
        return int(rc or 0)
    except (Cancelled, KeyboardInterrupt):
        print(f"{prefix}: cancelled; what was stored is kept (run the same command again to resume)",
              file=sys.stderr)
        return EXIT_CANCELLED
    except BrokenPipeError:  # `casebook ls | head`: the reader has what it wanted
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_OK
    except CasebookError as exc:
        log.debug("%s failed", name, exc_info=True)
        print(f"{prefix}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # a file or folder the user named: the message names it
        log.debug("%s failed", name, exc_info=True)
        print(f"{prefix}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # a bug: say so in one line, the traceback with -vv
        if verbose >= 2:
            import traceback

            traceback.print_exc()
        print(f"{prefix}: internal error: {type(exc).__name__}: {_one_line(exc)}"
              + ("" if verbose >= 2 else " (run with -vv for the traceback)"), file=sys.stderr)
        return EXIT_INTERNAL


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    import multiprocessing

    multiprocessing.freeze_support()  # spawned decode workers in a frozen (PyInstaller) bundle
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(WINDOW_COMMANDS if _opens_window(argv) else COMMAND_MODULES)
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if args.library:
        os.environ["CASEBOOK_LIBRARY"] = args.library
    if args.self_test:
        if args.command is not None:
            parser.error("--self-test takes no command")
        args = parser.parse_args([*(a for a in argv if a != "--self-test"), "self-test"])
    if args.command is None:
        args = parser.parse_args([*argv, "gui"])
    rc = run_command(args)
    try:  # output still buffered for a reader that has gone (`| head`): end quietly, not at exit
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
