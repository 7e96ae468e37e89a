"""What the command lines (``python -m sanmini.train``, ``python -m sanmini.data``) share: a user
error prints one line, ``PROG: error: ...``, and exits 2; ``--debug`` shows the traceback instead."""
from __future__ import annotations

import sys
from typing import Callable

USER_ERRORS = (ValueError, OSError)   # a wrong flag, file or folder: the message says which


def run_command(prog: str, main: Callable, argv=None) -> int:
    """Run ``main(argv)``; the exit status (0, or 2 for a user error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        main(argv)
    except USER_ERRORS as err:
        if "--debug" in argv:
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return 0
