"""The migration runner's matrix (tests/test_runner.py) on an sqld namespace.

Every test of test_runner.py that takes the ``db`` fixture runs again here, with
``db`` an :class:`HranaSession` on a fresh namespace of a real sqld: the same
formats, ledgers, rollbacks and drift checks, over the network.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_runner
from sqldsupport import TeamSqld, team_sqld

from branchdb.daemon.backends.sqld_auth import Signer
from branchdb.daemon.backends.sqld_client import Admin, HranaSession

pytestmark = pytest.mark.node

for _name, _fn in vars(test_runner).items():
    if _name.startswith("test_") and "db" in inspect.signature(_fn).parameters:
        globals()[_name] = _fn


@pytest.fixture(scope="module")
def sqld(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamSqld]:
    with team_sqld(tmp_path_factory.mktemp("sqld")) as team:
        yield team


@pytest.fixture
def db(sqld: TeamSqld, tmp_path: Path) -> Iterator[HranaSession]:
    namespace = f"bdb-runner-{os.urandom(5).hex()}"
    admin = Admin(sqld.admin)
    admin.create(namespace)
    token = Signer.from_file(sqld.key_file).token(namespace)
    s = HranaSession(sqld.server, namespace, token, "libsql://test", tmp_path)
    try:
        yield s
    finally:
        s.close()
        admin.delete(namespace)


def test_golang_migrate_failure_outside_transaction_leaves_dirty(
    tmp_path: Path, db: HranaSession
) -> None:
    """sqld refuses VACUUM outright ("unsupported statement"): the file fails at
    its first statement, and golang-migrate's ledger says dirty, as on a file."""
    from branchdb.daemon.core.errors import MigrationFailed
    from branchdb.daemon.migrations.base import DirFiles
    from branchdb.daemon.migrations.formats.golang_migrate import GolangMigrateFormat

    root = tmp_path / "m"
    root.mkdir()
    (root / "1_a.up.sql").write_text("CREATE TABLE a (id int);")
    (root / "2_b.up.sql").write_text("VACUUM;\nCREATE TABLE b (id int);\nBROKEN;")
    with pytest.raises(MigrationFailed) as e:
        test_runner.migrate(GolangMigrateFormat(), DirFiles(root), db)
    assert (e.value.file, e.value.statement_no) == ("2_b.up.sql", 1)
    assert "unsupported statement: VACUUM" in str(e.value)
    assert db.execute("SELECT version, dirty FROM schema_migrations") == [(2, 1)]
