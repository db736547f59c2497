"""The ``branchdb`` command line: the parser, and error translation.

Errors are translated here, once: a BranchdbError becomes ``branchdb: error: ...`` on
stderr (secrets redacted) and its exit code; anything else is a bug and says so.
Only the modules a command needs are imported, so the hook's fast path stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from branchdb.cli.commands import (
    _Ctx,
    cmd_diff,
    cmd_down,
    cmd_env,
    cmd_gc,
    cmd_hook,
    cmd_init,
    cmd_ls,
    cmd_migrate,
    cmd_reset,
    cmd_serve,
    cmd_snapshot,
    cmd_status,
    cmd_token,
    cmd_ttl,
    cmd_up,
    cmd_url,
)
from branchdb.daemon.core.errors import BranchdbError, redact


# ------------------------------------------------------------------- parser
class _Skipped:
    """Stands in for the sub-parsers of commands not being run (see build_parser)."""

    def add_argument(self, *args: object, **kwargs: object) -> None:
        pass

    def add_mutually_exclusive_group(self) -> _Skipped:
        return self


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or with *only* one command's sub-parser built.

    Building all thirteen sub-parsers costs ~10 ms, a tenth of the hook's budget;
    ``main`` builds just the one being run when the command name is plain to see.
    """
    p = argparse.ArgumentParser(
        prog="branchdb",
        description="An isolated database for every git branch.",
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="branchdb.toml to use (default: $BRANCHDB_CONFIG or search upwards)",
    )
    p.add_argument(
        "-C", dest="directory", metavar="DIR", help="run as if started in DIR"
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, fn: Callable[[_Ctx], int], help: str) -> Any:
        if only is not None and name != only:
            return _Skipped()
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=fn)
        return sp

    def branch_arg(sp: Any) -> None:
        sp.add_argument(
            "branch",
            nargs="?",
            metavar="BRANCH",
            help="git branch (default: the checked-out branch)",
        )

    def url_format_arg(sp: Any) -> None:
        from branchdb.daemon.core.urlforms import FORMS

        sp.add_argument(
            "--format",
            choices=FORMS,
            help="the URL in the form a tool reads (default: database.url_format; "
            "see the README's table)",
        )

    def json_arg(sp: Any) -> None:
        sp.add_argument("--json", action="store_true", help="machine-readable output")

    def source_args(sp: Any) -> None:
        g = sp.add_mutually_exclusive_group()
        g.add_argument(
            "--fresh", action="store_true", help="start from an empty database"
        )
        g.add_argument(
            "--from",
            dest="from_snapshot",
            metavar="SNAPSHOT",
            help="clone from SNAPSHOT (NAME or NAME@VERSION)",
        )

    sp = add("up", cmd_up, "create or update the branch's database and print its URL")
    branch_arg(sp)
    source_args(sp)
    sp.add_argument(
        "--reset-on-drift",
        action="store_true",
        help="rebuild the database when its migrations drifted (rebase)",
    )
    json_arg(sp)
    sp.add_argument(
        "--quiet", "-q", action="store_true", help="print nothing on success"
    )
    sp.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help='also print the output of the migrate command (format = "command")',
    )
    sp.add_argument("--hook", action="store_true", help=argparse.SUPPRESS)

    sp = add("url", cmd_url, "print the branch database's connection URL")
    branch_arg(sp)
    url_format_arg(sp)

    sp = add("env", cmd_env, "print or write DATABASE_URL=... for the branch")
    branch_arg(sp)
    url_format_arg(sp)
    sp.add_argument(
        "--var", metavar="NAME", help="variable name (default: database.env_var)"
    )
    sp.add_argument(
        "--write",
        metavar="FILE",
        help="update that variable in a dotenv FILE, keeping its other lines",
    )

    sp = add("ls", cmd_ls, "list this project's branch databases")
    json_arg(sp)

    sp = add("status", cmd_status, "show a branch database: source, size, migrations")
    branch_arg(sp)
    json_arg(sp)

    sp = add(
        "diff",
        cmd_diff,
        "the branch's schema against the default branch's database, and the lint "
        "of its migrations",
    )
    branch_arg(sp)
    g = sp.add_mutually_exclusive_group()
    g.add_argument(
        "--against",
        metavar="REF",
        help="compare with this branch's database, or snapshot NAME@N "
        "(default: the default branch)",
    )
    g.add_argument(
        "--drift",
        action="store_true",
        help="compare the database with what the branch's migrations produce",
    )
    out = sp.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="machine-readable output")
    out.add_argument(
        "--sql",
        action="store_true",
        help="print the statements that turn the base's schema into the branch's",
    )

    sp = add("migrate", cmd_migrate, "apply the branch's pending migrations")
    branch_arg(sp)
    sp.add_argument(
        "--dry-run", action="store_true", help="only list pending migrations"
    )
    json_arg(sp)

    sp = add(
        "reset",
        cmd_reset,
        "recreate the branch database from its source and re-apply migrations",
    )
    branch_arg(sp)
    source_args(sp)
    sp.add_argument(
        "--force", action="store_true", help="allow resetting a protected branch"
    )
    json_arg(sp)

    sp = add("down", cmd_down, "drop the branch's database")
    branch_arg(sp)
    sp.add_argument(
        "--yes", "-y", action="store_true", help="do not ask for confirmation"
    )
    sp.add_argument(
        "--force", action="store_true", help="allow dropping a protected branch"
    )
    json_arg(sp)

    sp = add("init", cmd_init, "write a starter branchdb.toml and ignore .branchdb/")
    sp.add_argument(
        "--default-branch", default="main", help="the project's main branch"
    )
    sp.add_argument(
        "--force", action="store_true", help="overwrite an existing branchdb.toml"
    )

    sp = add(
        "hook", cmd_hook, "manage the git post-checkout hook that runs `branchdb up`"
    )
    sp.add_argument("action", choices=["install", "uninstall", "status"])

    sp = add("gc", cmd_gc, "delete databases of merged, deleted and idle branches")
    sp.add_argument(
        "--dry-run", action="store_true", help="only print what would go and why"
    )
    json_arg(sp)

    sp = add("ttl", cmd_ttl, "set one branch's idle TTL for garbage collection")
    sp.add_argument("branch", metavar="BRANCH", help="git branch")
    sp.add_argument(
        "ttl",
        metavar="DURATION|never|default",
        help='e.g. "3d", "12h"; never: not collected for being idle; default: '
        "back to branches.ttl",
    )
    json_arg(sp)

    sp = add(
        "snapshot",
        cmd_snapshot,
        "create (optionally sanitized), check, list and remove snapshots",
    )
    sp.add_argument("action", choices=["create", "ls", "rm", "check", "refresh"])
    sp.add_argument(
        "name",
        nargs="?",
        metavar="NAME",
        help="snapshot name (rm: NAME[@VERSION]; refresh: a [snapshots.NAME])",
    )
    sp.add_argument(
        "--source",
        metavar="PATH_OR_URL",
        help="create, check: the database to read (a SQLite/libsql file, or a "
        "postgresql:// URL with the postgres backend)",
    )
    sp.add_argument(
        "--rules",
        metavar="FILE",
        help="create: sanitize with these rules (fail closed); check: compare",
    )
    sp.add_argument(
        "--allow-unreviewed",
        action="store_true",
        help="create: accept columns that look personal but have no rule (recorded)",
    )
    sp.add_argument(
        "--write-rules",
        metavar="FILE",
        help="check: write a starter rules file with one suggested rule per column",
    )
    json_arg(sp)

    def daemon_config_arg(sp: Any) -> None:
        sp.add_argument(
            "--config",
            dest="daemon_config",
            metavar="FILE",
            help="daemon config (TOML; default: $BRANCHDB_DAEMON_CONFIG, else serve "
            "the project found from the working directory)",
        )

    sp = add("serve", cmd_serve, "run the daemon: the HTTP API and webhooks")
    sp.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    sp.add_argument("--port", type=int, help="port to listen on (default 8765)")
    daemon_config_arg(sp)

    sp = add("token", cmd_token, "create, list and revoke the daemon's API tokens")
    sp.add_argument("action", choices=["create", "ls", "revoke"])
    sp.add_argument("id", nargs="?", metavar="ID", help="revoke: the token's id")
    sp.add_argument(
        "--scope",
        choices=["read", "ci", "admin"],
        help="create: read (get, list), ci (also create, migrate, reset, delete), "
        "admin",
    )
    sp.add_argument("--name", metavar="NAME", help="create: a label for the token")
    sp.add_argument(
        "--project",
        action="append",
        default=[],
        metavar="PROJECT",
        help="create: limit the token to this project (repeatable; default: every "
        "project the daemon serves)",
    )
    daemon_config_arg(sp)
    json_arg(sp)
    return p


COMMANDS = frozenset(
    {
        "up",
        "url",
        "env",
        "ls",
        "status",
        "migrate",
        "diff",
        "reset",
        "down",
        "init",
        "hook",
        "gc",
        "ttl",
        "snapshot",
        "serve",
        "token",
    }
)


def _command_name(argv: Sequence[str]) -> str | None:
    """The command in *argv* if it is unambiguous without parsing, else None."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config", "-C"):
            i += 2
            continue
        if arg.startswith("-"):
            return None  # --help, --version, --config=…: let argparse decide
        return arg if arg in COMMANDS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_name(args_list))
    args = parser.parse_args(args_list)
    if args.version:
        from importlib.metadata import version

        sys.stdout.write(f"branchdb {version('branchdb')}\n")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    needs_name = ("create", "rm", "refresh")
    if args.command == "snapshot" and args.action in needs_name and not args.name:
        parser.error(f"snapshot {args.action} needs a NAME")
    try:
        code: int = args.func(_Ctx(args))
        return code
    except BranchdbError as e:
        sys.stderr.write(f"branchdb: error: {redact(str(e))}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("branchdb: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:
        if os.environ.get("BRANCHDB_DEBUG"):
            raise
        sys.stderr.write(
            f"branchdb: internal error: {type(e).__name__}: {redact(str(e))} "
            "(set BRANCHDB_DEBUG=1 for a traceback, and please report it)\n"
        )
        return 70


if __name__ == "__main__":
    sys.exit(main())
