"""A branch URL in the form a given tool reads. Pure; standard library only.

=============  ===========================  =========================================
form           SQLite (libsql backend)      PostgreSQL
=============  ===========================  =========================================
native         ``file:/abs/x.db``           ``postgresql://u:p@h:port/db``
libpq          (refused: no SQLite)         ``postgresql://u:p@h:port/db``
dbmate         ``sqlite:/abs/x.db``         ``postgres://…/db?sslmode=prefer``
sqlalchemy     ``sqlite:////abs/x.db``      ``postgresql+psycopg://u:p@h:port/db``
jdbc           ``jdbc:sqlite:/abs/x.db``    ``jdbc:postgresql://h:port/db?user=u&password=p``
prisma         ``file:/abs/x.db``           ``postgresql://u:p@h:port/db``
path           ``/abs/x.db``                (refused)
=============  ===========================  =========================================

``sslmode=prefer`` for dbmate: its lib/pq driver defaults to ``require`` and so
refuses a server without TLS, where libpq's own default (``prefer``) uses TLS only
when the server offers it. An ``sslmode`` already in the URL is kept.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from branchdb.daemon.core.errors import Refused

FORMS = ("native", "libpq", "dbmate", "sqlalchemy", "jdbc", "prisma", "path")


def convert(url: str, form: str) -> str:
    """*url* (as a backend gives it) in *form*; Refused when it has none."""
    if form not in FORMS:
        raise Refused(f"unknown URL form {form!r}; choose one of {', '.join(FORMS)}")
    if form == "native":
        return url
    if url.startswith("file:"):
        return _sqlite(url.removeprefix("file:"), form)
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("postgres", "postgresql"):
        return _postgres(url, form)
    raise Refused(
        f"a {scheme}: URL has no {form} form (a database served over the network "
        "by sqld is reached with its native URL)"
    )


def _sqlite(path: str, form: str) -> str:
    path = path.split("?", 1)[0]
    if form == "libpq":
        raise Refused("libpq reads PostgreSQL URLs only; this is a SQLite file")
    return {
        "dbmate": f"sqlite:{path}",
        "sqlalchemy": f"sqlite:///{path}",
        "jdbc": f"jdbc:sqlite:{path}",
        "prisma": f"file:{path}",
        "path": path,
    }[form]


def _postgres(url: str, form: str) -> str:
    parts = urlsplit(url)
    if form == "path":
        raise Refused("a PostgreSQL database has no file path")
    if form in ("libpq", "prisma"):
        return urlunsplit(parts._replace(scheme="postgresql"))
    if form == "sqlalchemy":
        return urlunsplit(parts._replace(scheme="postgresql+psycopg"))
    query = parse_qsl(parts.query, keep_blank_values=True)
    if form == "dbmate":
        if not any(k == "sslmode" for k, _ in query):
            query.append(("sslmode", "prefer"))
        return urlunsplit(parts._replace(scheme="postgres", query=urlencode(query)))
    # jdbc: no user info in the authority; user and password are parameters.
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    creds = []
    if parts.username:
        creds.append(("user", unquote(parts.username)))
    if parts.password:
        creds.append(("password", unquote(parts.password)))
    q = urlencode(creds + query, quote_via=quote)
    return f"jdbc:postgresql://{netloc}{parts.path}" + (f"?{q}" if q else "")
