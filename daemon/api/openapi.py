"""The OpenAPI document says what the API really answers.

FastAPI documents its own 422 shape (``{"detail": [...]}``) while the app's handler
answers ``{"error": {...}}``, and it does not mention the answers that come from
outside the routes: malformed JSON (400) and bodies over the limit (413) for every
operation that takes a body. :func:`install` patches the generated document once,
so clients and property-based fuzzers (tests/test_api_fuzz.py) hold the API to it.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from branchdb.daemon.api.schemas import ErrorBody

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_BODY_ERRORS = {
    "400": "Malformed request (bad JSON, hostile branch name, missing header)",
    "413": "Request body over the daemon's limit (server.max_body)",
}


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ERROR_REF}},
    }


def patch(doc: dict[str, Any]) -> dict[str, Any]:
    """Fix *doc*'s error responses in place (see the module docstring); return it."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    if "ErrorBody" not in schemas:
        extra = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(extra.pop("$defs", {}))
        schemas["ErrorBody"] = extra
    for item in doc.get("paths", {}).values():
        for op in item.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses = op["responses"]
            if "422" in responses:
                responses["422"] = _error_response(
                    "Invalid parameters (error.details lists each), or a migration "
                    "failed / drifted / was edited"
                )
            if "requestBody" in op:
                for code, what in _BODY_ERRORS.items():
                    responses.setdefault(code, _error_response(what))
    # FastAPI's own validation models are no longer referenced by anything.
    text = json.dumps(doc)
    for name in ("HTTPValidationError", "ValidationError"):
        if f'"#/components/schemas/{name}"' not in text:
            schemas.pop(name, None)
    return doc


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the patched document (built once, cached)."""

    generate = app.openapi  # FastAPI's: builds and caches app.openapi_schema

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = patch(generate())
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]
