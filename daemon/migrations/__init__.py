"""Migration formats registered by name, and ``auto`` detection."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from branchdb.daemon.migrations.base import Format, MigrationFiles

_F = "branchdb.daemon.migrations.formats"
#: Detection order matters: the most specific layouts first, plain sql last.
REGISTRY: dict[str, str] = {
    "drizzle": f"{_F}.drizzle:DrizzleFormat",
    "prisma": f"{_F}.prisma:PrismaFormat",
    "golang-migrate": f"{_F}.golang_migrate:GolangMigrateFormat",
    "flyway": f"{_F}.flyway:FlywayFormat",
    "dbmate": f"{_F}.dbmate:DbmateFormat",
    "sql": f"{_F}.plain:PlainSqlFormat",
    "command": f"{_F}.command:CommandFormat",
}


def get_format(name: str) -> Format:
    target = REGISTRY.get(name)
    if target is None:
        from branchdb.daemon.core.errors import ConfigError

        raise ConfigError(
            f"unknown migrations format {name!r}; choose one of: auto, "
            f"{', '.join(REGISTRY)}"
        )
    module, cls = target.split(":")
    fmt: Format = getattr(importlib.import_module(module), cls)()
    return fmt


def detect_format(files: MigrationFiles) -> str | None:
    """Name of the first format whose layout *files* match, or None."""
    for name in REGISTRY:
        if name == "command":
            continue
        try:
            fmt = get_format(name)
        except ModuleNotFoundError:  # a format not built yet
            continue
        if fmt.detect(files):
            return name
    return None
