"""SQLite: introspection, masking in place, its verifier and the pipeline.

The modules and how they depend on each other are listed in
:mod:`branchdb.daemon.sanitize`.
"""
