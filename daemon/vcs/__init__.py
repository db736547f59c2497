"""What branchdb reads from git: :mod:`.head` (HEAD without a git process),
:mod:`.repo` (branches, merged-ness), :mod:`.tree` (a commit's migration files and
the daemon's fetched mirror)."""
