"""Undo Locust's shadowing of the standard library ``queue`` module.

Locust imports ``locustfiles/queue.py`` under the module name ``queue`` and registers it in
``sys.modules``, so every later ``import queue`` (redis-py's connection pool does one) would get
the locustfile. ``restore_stdlib_queue()`` puts the real module back, preferring the object other
modules already hold (gevent may have patched it), else importing it fresh from the stdlib path.
Imports nothing heavy: it must run before redis-py is imported.
"""

from __future__ import annotations

import importlib
import os
import sys
import sysconfig
from types import ModuleType


def restore_stdlib_queue(locustfile_module: str) -> None:
    current = sys.modules.get("queue")
    if locustfile_module != "queue" or current is None or not _is_locustfile(current):
        return
    for module in list(sys.modules.values()):
        candidate = getattr(module, "queue", None)
        if isinstance(candidate, ModuleType) and candidate is not current and _is_stdlib(candidate):
            sys.modules["queue"] = candidate
            return
    del sys.modules["queue"]
    saved = list(sys.path)
    stdlib = sysconfig.get_paths()["stdlib"]
    try:
        sys.path[:] = [stdlib, *[p for p in saved if p and os.path.abspath(p) != _locustfile_dir(current)]]
        sys.modules["queue"] = importlib.import_module("queue")
    finally:
        sys.path[:] = saved


def _is_locustfile(module: ModuleType) -> bool:
    return not _is_stdlib(module)


def _is_stdlib(module: ModuleType) -> bool:
    path = getattr(module, "__file__", "") or ""
    return os.path.dirname(os.path.abspath(path)) == os.path.abspath(sysconfig.get_paths()["stdlib"])


def _locustfile_dir(module: ModuleType) -> str:
    return os.path.dirname(os.path.abspath(getattr(module, "__file__", "") or ""))
