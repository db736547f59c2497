"""Who is acting: the actor the engine writes into the audit log.

Adapters say who they act for, around their engine call::

    with audit.acting(f"token:{token.id}"):
        engine.up(branch)

The actor is a context variable, so it follows the call into the engine (and into the
garbage collector) without widening every signature, and the engine stays free of
FastAPI. A call made outside any ``acting`` block is the local user's: ``cli:<user>``.
Actors in use: ``token:<id>`` (API), ``github:<delivery id>`` (webhook), ``cli:<os
user>``, ``scheduler`` (the daemon's timers).
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import NamedTuple


class Actor(NamedTuple):
    who: str  # see the module docstring
    why: str = ""  # the caller's reason, e.g. "pull_request synchronize acme/shop#12"


_current: ContextVar[Actor | None] = ContextVar("branchdb_actor", default=None)


def local() -> Actor:
    """The OS user running this process, as ``cli:<user>``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no $USER (containers)
        user = "unknown"
    return Actor(f"cli:{user}")


def current() -> Actor:
    """The innermost :func:`acting` actor of this context, else :func:`local`."""
    return _current.get() or local()


@contextmanager
def acting(who: str, why: str = "") -> Iterator[Actor]:
    """Attribute engine calls made inside the block to *who* (for *why*)."""
    actor = Actor(who, why)
    token = _current.set(actor)
    try:
        yield actor
    finally:
        _current.reset(token)
