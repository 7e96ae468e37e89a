"""Where the ``"cpu"`` backend's compiled kernels are kept on disk, so that only the first process
compiles them (6 to 20 s) and every later one loads them.

Numba's own cache checks only the date of the file that defines a kernel, not of
``elementwise.py``, whose functions the kernels call. So the cache folder is named after a hash
of every source file of :mod:`sanmini.ops` and Numba's version: a changed kernel, or another
Numba, gets a new folder and is compiled afresh, never served stale.

- ``SANMINI_NUMBA_CACHE`` unset: ``$NUMBA_CACHE_DIR`` if set, else the user's cache folder
  (``$XDG_CACHE_HOME``, else ``~/.cache``) ``/sanmini/numba``; then ``sanmini-ops-KEY/`` in it.
- ``SANMINI_NUMBA_CACHE=DIR``: ``DIR/sanmini-ops-KEY/``.
- ``SANMINI_NUMBA_CACHE=0`` (or ``off``): no cache; every process compiles.

A folder that cannot be created means no cache, never an error.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba

ENV = "SANMINI_NUMBA_CACHE"
OPS_DIR = Path(__file__).resolve().parent


def cache_key(sources=None) -> str:
    """16 hex digits of the SHA-256 of the ops sources (``{name: text}``, default: this package's
    ``*.py`` files) and of Numba's version."""
    if sources is None:
        sources = {p.name: p.read_text() for p in sorted(OPS_DIR.glob("*.py"))}
    digest = hashlib.sha256(numba.__version__.encode())
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return digest.hexdigest()[:16]


def kernel_cache_dir(environ=None) -> Path | None:
    """The folder for this version's compiled kernels, created; None when caching is off."""
    environ = os.environ if environ is None else environ
    choice = environ.get(ENV, "")
    if choice.lower() in ("0", "off", "false", "no"):
        return None
    if choice:
        base = Path(choice).expanduser()
    elif environ.get("NUMBA_CACHE_DIR"):
        base = Path(environ["NUMBA_CACHE_DIR"])
    else:
        base = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sanmini" / "numba"
    path = base / f"sanmini-ops-{cache_key()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK) else None

