"""PostgreSQL: introspection, masked expressions, the streaming build, its verifier.

The modules and how they depend on each other are listed in
:mod:`branchdb.daemon.sanitize`.
"""
