"""``casebook gui [PATH]``: the reading-room application (also what plain ``casebook`` opens).

Before Qt is loaded the display is checked here: without one, Qt's xcb plugin aborts the
process (exit 134) with a misleading "xcb-cursor0 is needed" message; a reader or an IT person
gets one line saying what is missing and how to run headless instead.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

# Qt platforms that need no window system.
_HEADLESS_PLATFORMS = {"offscreen", "minimal", "vnc", "eglfs", "linuxfb", "vkkhrdisplay"}

HEADLESS_HINT = ("run it under a virtual display (xvfb-run -a casebook gui) or set QT_QPA_PLATFORM=offscreen; "
                 "`casebook demo --open` lists the library instead")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "gui", help="open the viewer (default when no command is given)",
        description="Open the reading-room window on the library (--library DIR for another one), and "
                    "on PATH, a DICOM folder or file, if given. Needs a display: " + HEADLESS_HINT + ".")
    p.add_argument("path", nargs="?", type=Path, help="a DICOM folder or file to open")
    p.set_defaults(func=run)


def _x11_reachable(display: str) -> bool:
    host, _, rest = display.rpartition(":")
    number = rest.split(".", 1)[0]
    if not number.isdigit():
        return False
    if host in ("", "unix") or host.startswith("/"):
        if host.startswith("/"):  # macOS launchd-style socket path
            return Path(display.rsplit(":", 1)[0]).exists()
        sock = Path(f"/tmp/.X11-unix/X{number}")
        if sock.exists():
            return True
        # Linux X servers also listen on an abstract socket of the same name
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(f"\0/tmp/.X11-unix/X{number}")
            return True
        except OSError:
            return False
    try:  # ssh -X forwarding and remote displays: host:N is TCP port 6000+N
        with socket.create_connection((host, 6000 + int(number)), timeout=1.0):
            return True
    except OSError:
        return False


def display_problem(environ: dict[str, str] | None = None) -> str | None:
    """Why no window can be opened here, or ``None`` when a display (or a headless Qt platform)
    is available. Only Linux/BSD desktops need a display server; Windows and macOS always have one."""
    env = os.environ if environ is None else environ
    if not sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return None
    platform = env.get("QT_QPA_PLATFORM", "").split(":", 1)[0].strip().lower()
    if platform in _HEADLESS_PLATFORMS:
        return None
    wayland = env.get("WAYLAND_DISPLAY", "")
    if wayland and platform in ("", "wayland", "wayland-egl"):
        runtime = env.get("XDG_RUNTIME_DIR", "")
        sock = Path(wayland) if wayland.startswith("/") else Path(runtime) / wayland
        if sock.exists():
            return None
        if platform.startswith("wayland"):
            return f"no display: the Wayland socket {sock} does not exist"
    display = env.get("DISPLAY", "")
    if not display:
        return "no display: DISPLAY is not set (no X11 or Wayland session)"
    if not _x11_reachable(display):
        return f"no display: the X server of DISPLAY={display} is not reachable"
    return None


def run(args: argparse.Namespace) -> int:
    if args.path is not None and not args.path.exists():
        print(f"casebook gui: {args.path}: no such file or folder", file=sys.stderr)
        return 2
    problem = display_problem()
    if problem is not None:
        print(f"casebook gui: {problem}; {HEADLESS_HINT}", file=sys.stderr)
        return 2

    from casebook.viewer.qt.app import run_gui  # late: only the GUI pays for Qt and VTK

    return run_gui(args.path)
