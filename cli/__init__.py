"""branchdb's command line: thin adapters over the engine (or the daemon's API)."""
