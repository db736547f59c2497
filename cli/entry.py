"""The ``branchdb`` console script: the hook's fast path first, then the full CLI."""

from __future__ import annotations

import sys


def run() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["up"]:
        from branchdb.cli.fast import try_up

        code = try_up(argv)
        if code is not None:
            return code
    from branchdb.cli.main import main

    return main(argv)
