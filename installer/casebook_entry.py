"""Entry point of the frozen bundle: the same ``casebook`` command as the installed one.

``casebook.viewer.cli.main`` calls ``multiprocessing.freeze_support()`` first, so the spawned
decode workers (``casebook.viewer.core.dicom._codec``) start inside the bundle too.
"""
import sys

from casebook.viewer.cli import main

if __name__ == "__main__":
    sys.exit(main())
