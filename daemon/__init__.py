"""branchdb's engine side: the engine, backends, migrations, store and (later) the API.

Nothing here prints or imports the CLI; heavy libraries are imported lazily inside the
functions that need them so that ``branchdb up`` stays fast when there is nothing to do.
"""
