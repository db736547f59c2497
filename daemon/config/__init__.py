"""A project's configuration: :mod:`.locate` finds ``branchdb.toml`` (standard library
only, for the hook path), :mod:`.project` parses and validates it."""
