"""Passwords in connection URLs stay out of sight: out of ``ps``, child command lines and
Locust's web UI page. Results and logs only ever hold ``redact_url`` forms."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from urllib.parse import urlsplit

from taskqueue.settings import redact_url

URL_ENV_VARS = ("TQB_REDIS_URL", "REDIS_URL")


def has_secret(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.password is not None or (parts.username is not None and "://" in url)


def redact_arg(arg: str) -> str:
    """One command-line word with any URL password removed (``--redis-url=redis://:pw@h`` too)."""
    flag, eq, value = arg.partition("=")
    if eq and "://" in value and not flag.count("://"):
        return f"{flag}={redact_url(value)}" if has_secret(value) else arg
    return redact_url(arg) if "://" in arg and has_secret(arg) else arg


def redacted_argv(argv: Iterable[str]) -> list[str]:
    return [redact_arg(a) for a in argv]


def hide_from_ps() -> None:
    """Rewrite this process's visible command line when it carries a password. The process
    keeps the real value in memory; ``ps`` and /proc/PID/cmdline show the redacted one."""
    clean = redacted_argv(sys.argv)
    if clean == sys.argv:
        return
    try:
        import setproctitle
    except ImportError:  # the dependency is declared; without it, say so rather than fail
        sys.stderr.write("warning: a password is visible in this process's command line (no setproctitle)\n")
        return
    setproctitle.setproctitle(" ".join([os.path.basename(sys.executable), *clean]))


def scrub_for_web_ui() -> None:
    """Locust's web UI page re-reads the command line and the env vars to show each option's
    default; leave it only the redacted forms (the connection was already resolved)."""
    sys.argv[:] = redacted_argv(sys.argv)
    for name in URL_ENV_VARS:
        if name in os.environ and has_secret(os.environ[name]):
            os.environ[name] = redact_url(os.environ[name])
