"""Settings from the environment, secrets from files (twelve-factor).

Every ``BRANCHDB_*`` variable the daemon reads may instead name a file with a
``_FILE`` suffix, as the official postgres image does: ``BRANCHDB_PG_URL_FILE=
/run/secrets/pg-url`` reads the URL from that file (one trailing newline stripped).
That is how Kubernetes Secrets and Docker secrets reach the daemon without putting
the value in the process environment. Setting both is an error (which one wins would
be a guess); a file over 64 KiB is refused before it is read in full.
"""

from __future__ import annotations

import os

#: Secrets are short; a bigger file is a mistake (a wrong mount), not a secret.
MAX_FILE_BYTES = 64 * 1024


def get(name: str) -> str | None:
    """``$name``, or the contents of the file ``$name_FILE``; None if neither is set
    (an empty value counts as unset). Raises ConfigError for both set, or a file that
    cannot be read or is too big."""
    value = os.environ.get(name) or None
    path = os.environ.get(f"{name}_FILE") or None
    if path is None:
        return value
    from branchdb.daemon.core.errors import ConfigError

    if value is not None:
        raise ConfigError(f"set one of ${name} and ${name}_FILE, not both")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"${name}_FILE: cannot read {path}: {e.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"${name}_FILE: {path} is over {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"${name}_FILE: {path} is not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")
    return text or None
