"""Sanitized snapshots: rules, a PII detector, set-based masking and a leak verifier.

Dependencies point one way::

    pipeline → {detect, compile_pg, compile_sqlite, verify} → {rules, schema, fakes}

Everything here works on an *already copied* staging database (the backends copy the
source); nothing in this package ever connects to the source.
"""
