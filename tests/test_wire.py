"""One definition of each JSON shape (branchdb.daemon.wire), held to by every user.

- every field of an engine result reaches its wire shape (a new fact on Status or
  UpResult fails here until ``--json`` and the API carry it);
- each view answers exactly its shape's keys, in its order, with its types;
- the API's pydantic models are those shapes (names, fields, types), and every
  answer of a project route is documented with one of them.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints, is_typeddict

import pytest
from apisupport import settings_for, setup_project
from pydantic import BaseModel

from branchdb.daemon import views, wire
from branchdb.daemon.api import schemas
from branchdb.daemon.api.app import create_app
from branchdb.daemon.core.engine import Engine
from branchdb.daemon.core.models import BranchRecord, SnapshotRecord
from branchdb.daemon.core.results import MigrateResult, SnapshotCheck, Status, UpResult
from branchdb.daemon.gc import collector, ttl
from branchdb.daemon.gc.policy import Candidate
from branchdb.daemon.gc.results import GcReport, GcTotals, ReasonTotals, Ttl
from branchdb.daemon.review.lint import Finding as LintFinding
from branchdb.daemon.review.model import Change, SchemaDiff
from branchdb.daemon.review.review import LintResult, Review
from branchdb.daemon.sanitize.detect import Finding
from branchdb.daemon.store.base import AuditEntry

T = 1_780_000_000.0

#: Every shape of wire.py.
SHAPES = [
    v for v in vars(wire).values() if is_typeddict(v) and v.__module__ == wire.__name__
]


def record(**kw: Any) -> BranchRecord:
    return BranchRecord(
        **{
            "project": "shop",
            "branch": "feature/x",
            "database": "bdb-feature-x-1a2b3c4d5e",
            "backend": "libsql",
            "source": "fresh",
            "status": "ready",
            "created_at": T,
            "last_used_at": T + 60,
            "url": "file:/data/bdb-feature-x-1a2b3c4d5e.db",
            "applied": {"001": "c1", "002": "c2"},
            "info": {"strategy": "fresh"},
            **kw,
        }
    )


def snapshot() -> SnapshotRecord:
    return SnapshotRecord(
        "shop", "seed", 2, "libsql", "/data/seed@2.db", T,
        "postgresql://u:secret@db/shop", 4096, {"sanitize": {"tables": 1}},
    )  # fmt: skip


def candidate(branch: str | None, marked: float | None, size: int = 0) -> Candidate:
    return Candidate("idle", "unused for 8d", f"bdb-{branch}", branch, marked, T, size)


TTL = Ttl("feature/x", 7 * 86400, "project", T + 7 * 86400, False)
GONE = candidate("gone", T - 7200, 8192)
TOTALS = GcTotals(1, 8192, {"idle": ReasonTotals(1, 8192)}, 3, T)
FINDING = Finding("people", "email", "email", "name", {"strategy": "email"})

#: (view's answer, its shape) for every view, with results that fill every field.
REVIEW = Review(
    SchemaDiff(
        "postgres",
        "branch main",
        "branch x",
        (
            Change("column", "added", "public.users.age", None, "integer NOT NULL"),
            Change("column", "changed", "public.users.email", "text NULL", "text"),
        ),
        "alter table ...",
        ("privileges",),
    ),
    LintResult(
        "branch main",
        "branch x",
        "squawk",
        ("0002.sql",),
        (
            LintFinding(
                "db/0002.sql", "0002.sql", 3, 3, "ban-drop-column", "warning", "m", None
            ),
            LintFinding("db/0002.sql", "0002.sql", 4, 5, "x", "error", "m", "help"),
        ),
    ),
)

ANSWERS: list[tuple[Any, type]] = [
    (views.branch_dict(record()), wire.Branch),
    (views.branch_dict(record(info={})), wire.Branch),
    (
        views.up_dict(
            UpResult(record(), created=True, applied=("001",), evicted=("a",))
        ),
        wire.UpBranch,
    ),
    (views.up_to_date_dict(record()), wire.UpBranch),
    (
        views.reset_dict(UpResult(record(), reset=True, applied=("001",))),
        wire.ResetBranch,
    ),
    (views.dropped_dict(record()), wire.DroppedBranch),
    (
        views.migrate_dict(MigrateResult(record(), pending=("003",), dry_run=True)),
        wire.Migrate,
    ),
    (views.snapshot_dict(snapshot()), wire.Snapshot),
    (views.created_snapshot_dict(snapshot()), wire.CreatedSnapshot),
    (views.ttl_dict(TTL), wire.Ttl),
    (views.ttl_dict(Ttl("main", None, "branch", None, True)), wire.Ttl),
    (
        views.status_dict(
            Status(record(), True, 4096, ("003",), "drift: password=secret"),
            protected=False,
            ttl=TTL,
        ),
        wire.BranchStatus,
    ),
    (
        views.status_dict(Status(record(), False), protected=True, ttl=TTL),
        wire.BranchStatus,
    ),
    (views.gc_totals_dict(TOTALS), wire.GcTotals),
    (views.gc_totals_dict(GcTotals()), wire.GcTotals),
    (
        views.gc_dict(
            GcReport(
                (GONE, candidate("new", None), candidate(None, T - 60)),
                ("lost",),
                (GONE,),
                ("busy",),
                TOTALS,
            ),
            dry_run=False,
        ),
        wire.Gc,
    ),
    *((f, wire.Finding) for f in views.finding_dicts([FINDING], [FINDING])),
    *((f, wire.Finding) for f in views.finding_dicts([FINDING], None)),
    (
        views.audit_dict(AuditEntry(T, "shop", "x", "create", "cli:dev", "", "d", 7)),
        wire.AuditEntry,
    ),
    (views.review_dict(REVIEW), wire.SchemaReview),
    (views.review_dict(Review(REVIEW.diff, None)), wire.SchemaReview),
]

#: engine result -> its wire shape, and the result fields carried another way.
CARRIED: list[tuple[type, type, dict[str, str]]] = [
    (UpResult, wire.UpBranch, {"record": "the branch's own fields"}),
    (MigrateResult, wire.Migrate, {"record": "branch"}),
    (Status, wire.BranchStatus, {"record": "the branch's own fields"}),
    (Ttl, wire.Ttl, {}),
    (GcTotals, wire.GcTotals, {}),
    (ReasonTotals, wire.GcReasonTotals, {}),
    (GcReport, wire.Gc, {"deleted": "candidates[].deleted, freed_bytes"}),
    (Candidate, wire.GcCandidate, {"reason": "policy", "size_bytes": "freed_bytes"}),
    (
        SnapshotCheck,
        wire.Finding,
        {
            "findings": "a list",
            "unreviewed": "has_rule",
            "limits": "stderr (the JSON is a list)",
        },
    ),
    (AuditEntry, wire.AuditEntry, {}),
]


@pytest.mark.parametrize(("result", "shape", "elsewhere"), CARRIED)
def test_every_result_field_reaches_its_wire_shape(
    result: type, shape: type, elsewhere: dict[str, str]
) -> None:
    if dataclasses.is_dataclass(result):
        fields = {f.name for f in dataclasses.fields(result)}
    else:  # a NamedTuple of the store
        fields = set(result._fields)  # type: ignore[attr-defined]
    assert set(elsewhere) <= fields
    missing = fields - set(elsewhere) - set(get_type_hints(shape))
    assert not missing, (
        f"{result.__name__} has {sorted(missing)} that the JSON shape "
        f"wire.{shape.__name__} lacks: add them there and in views"
    )


ANSWER_TYPES = (UpResult, MigrateResult, Status, SnapshotCheck)
GC_ANSWER_TYPES = (GcReport, GcTotals, ReasonTotals, Ttl)


@pytest.mark.parametrize("result", ANSWER_TYPES + GC_ANSWER_TYPES)
def test_every_engine_answer_is_a_frozen_dataclass(result: type) -> None:
    assert dataclasses.is_dataclass(result)
    assert result.__dataclass_params__.frozen  # type: ignore[attr-defined]


def _untyped(tp: Any) -> bool:
    """Whether *tp* is, or holds, ``Any`` (``dict[str, Any]`` included)."""
    return tp is Any or any(_untyped(a) for a in get_args(tp))


def test_no_engine_verb_answers_untyped_data() -> None:
    verbs = [
        fn
        for name, fn in vars(Engine).items()  # its verbs (not the context's plumbing)
        if inspect.isfunction(fn) and not name.startswith("_")
    ]
    verbs += [collector.collect, collector.totals, ttl.set_ttl, ttl.ttl_of]
    for fn in verbs:
        # Only the answer's annotation: parameters may name types imported for the
        # type checker alone.
        answer = eval(fn.__annotations__["return"], fn.__globals__)
        assert not _untyped(answer), f"{fn.__qualname__} answers {answer}"


def _check(value: Any, tp: Any, where: str) -> None:
    """*value* (decoded JSON) has type *tp* of a wire shape, exactly."""
    if is_typeddict(tp):
        assert isinstance(value, dict), where
        hints = get_type_hints(tp)
        assert list(value) == list(hints), f"{where}: keys or their order differ"
        for key, sub in hints.items():
            _check(value[key], sub, f"{where}.{key}")
        return
    origin, args = get_origin(tp), get_args(tp)
    if origin is types.UnionType:
        errors = []
        for option in args:
            try:
                _check(value, option, where)
                return
            except AssertionError as e:
                errors.append(e)
        raise AssertionError(f"{where}: {value!r} is none of {tp}: {errors}")
    if origin is list:
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            _check(item, args[0], f"{where}[{i}]")
    elif origin is dict:
        assert isinstance(value, dict), where
        for k, item in value.items():
            _check(k, args[0], where)
            _check(item, args[1], f"{where}[{k!r}]")
    elif tp is Any:
        pass
    elif tp is type(None):
        assert value is None, where
    else:
        # bool is an int in Python, not in JSON: hold them apart.
        assert type(value) is tp or (tp is float and type(value) is int), (
            f"{where}: {value!r} is not {tp.__name__}"
        )


@pytest.mark.parametrize(("answer", "shape"), ANSWERS)
def test_views_answer_exactly_their_shape(answer: Any, shape: type) -> None:
    decoded = json.loads(json.dumps(answer))  # what --json prints
    assert decoded == answer, "not plain JSON (a tuple, a datetime…)"
    _check(decoded, shape, shape.__name__)
    # The API's model accepts it strictly and serializes it unchanged, keys in order.
    model = schemas.model_of(shape)
    dumped = model.model_validate_json(json.dumps(answer), strict=True).model_dump()
    assert json.dumps(dumped) == json.dumps(answer)


def test_views_cover_every_shape() -> None:
    answered = {shape for _, shape in ANSWERS}
    # checked inside wire.Gc and wire.SchemaReview
    nested = {wire.GcCandidate, wire.GcReasonTotals, wire.SchemaChange}
    nested |= {wire.SchemaDiff, wire.LintFinding, wire.SchemaLint}
    assert set(SHAPES) - nested == answered


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.__name__)
def test_api_models_are_the_wire_shapes(shape: type) -> None:
    model = schemas.model_of(shape)
    assert model.__name__ == shape.__name__
    hints = get_type_hints(shape)
    assert list(model.model_fields) == list(hints)
    for name, field in model.model_fields.items():
        assert field.is_required(), name
        assert _plain(field.annotation) == _plain(hints[name]), name
    assert getattr(schemas, shape.__name__, model) is model


def _plain(tp: Any) -> Any:
    """*tp* with generated models named by their wire shapes, for comparison."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp.__name__
    if is_typeddict(tp):
        return tp.__name__
    args = get_args(tp)
    if not args:
        return tp
    return (get_origin(tp), tuple(_plain(a) for a in args))


def test_every_project_route_answers_a_documented_wire_shape(repo: Path) -> None:
    spec = create_app(settings_for(setup_project(repo))).openapi()
    names = {s.__name__ for s in SHAPES}
    components = spec["components"]["schemas"]
    seen = set()
    for path, item in spec["paths"].items():
        if not path.startswith("/v1/projects/"):
            continue
        for method, op in item.items():
            ok = [c for c in op["responses"] if c in ("200", "201")]
            assert ok, f"{method} {path} documents no success answer"
            for code in ok:
                schema = op["responses"][code]["content"]["application/json"]["schema"]
                schema = schema.get("items", schema)  # a list of them
                name = schema.get("$ref", "").rpartition("/")[2]
                assert name in names, f"{method} {path} {code}: {schema}"
                seen.add(name)
    # The project routes answer every shape but the CLI's own (snapshot check),
    # and the parts of the GC answer.
    assert seen == names - {
        "Finding",
        "GcCandidate",
        "GcReasonTotals",
        "GcTotals",
        "SchemaChange",
        "SchemaDiff",
        "LintFinding",
        "SchemaLint",
    }
    # The components are the generated models, whatever FastAPI adds around them.
    for name in seen:
        model = schemas.model_of(getattr(wire, name))
        own = model.model_json_schema(ref_template="#/components/schemas/{model}")
        own.pop("$defs", None)
        assert components[name] == own, name
