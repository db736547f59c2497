"""The daemon's HTTP API: ``create_app(settings)`` builds it (see :mod:`.app`)."""
