# syntax=docker/dockerfile:1
# The branchdb daemon. Build:  docker build -t branchdb .
# Where no registry or package index is reachable from inside builds, `.ci/docker`
# builds it from a local Debian base and wheels downloaded on the host
# (build/image/wheels in the context: installed with --no-index when present).
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# A plain Debian base has no Python: take Debian's (3.11 on bookworm).
RUN if ! command -v python3 >/dev/null; then \
      apt-get update -qq && \
      apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null && \
      rm -rf /var/lib/apt/lists/*; \
    fi && python3 -m venv /opt/branchdb
COPY . /src
RUN if [ -d /src/build/image/wheels ]; then \
      /opt/branchdb/bin/pip install -q --no-index --find-links /src/build/image/wheels branchdb; \
    else \
      /opt/branchdb/bin/pip install -q /src; \
    fi && \
    # libsql-client 0.3.1 declares its documentation theme (sphinx-press-theme) as a
    # run-time dependency: Sphinx and its tree are ~90 MB nothing imports. Nor does
    # anything need pip or setuptools at run time.
    /opt/branchdb/bin/pip uninstall -q -y sphinx-press-theme sphinx babel docutils \
      pygments alabaster imagesize snowballstemmer roman-numerals-py roman-numerals \
      sphinxcontrib-applehelp sphinxcontrib-devhelp sphinxcontrib-htmlhelp \
      sphinxcontrib-jsmath sphinxcontrib-qthelp sphinxcontrib-serializinghtml \
      setuptools pip 2>/dev/null; \
    find /opt/branchdb -name '__pycache__' -prune -exec rm -rf {} + && \
    /opt/branchdb/bin/python -m compileall -q /opt/branchdb/lib
# Wheels' extension modules ship their symbol tables (pglast's parser 28 MB, of
# which 3.7 MB is code; uvloop 14 MB, 1.6 MB): stripped, ~40 MB less. Only the
# modules themselves: the libraries auditwheel vendored (*.libs) stay as built.
RUN apt-get update -qq && \
    apt-get install -y -qq --no-install-recommends binutils >/dev/null && \
    rm -rf /var/lib/apt/lists/* && \
    find /opt/branchdb/lib -name '*.so' ! -path '*.libs/*' \
      -exec strip --strip-unneeded {} +

FROM ${BASE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="branchdb" \
      org.opencontainers.image.description="An isolated database for every git branch: the daemon (REST API, webhooks, garbage collection)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/branchdb/branchdb"
# pg_dump, pg_restore, psql (snapshots) and git (webhook mirrors); Python when the
# base has none. No compilers, no docs, no message translations (48 MB).
RUN apt-get update -qq && \
    pkgs="postgresql-client git ca-certificates" && \
    if ! command -v python3 >/dev/null; then pkgs="$pkgs python3"; fi && \
    apt-get install -y -qq --no-install-recommends $pkgs >/dev/null && \
    rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man /usr/share/locale/* && \
    groupadd --system --gid 10001 branchdb && \
    useradd --system --uid 10001 --gid branchdb --home-dir /var/lib/branchdb \
      --create-home --shell /usr/sbin/nologin branchdb
COPY --from=build /opt/branchdb /opt/branchdb
ENV PATH=/opt/branchdb/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BRANCHDB_HOST=0.0.0.0 \
    BRANCHDB_PORT=8765 \
    BRANCHDB_DAEMON_DATA_DIR=/var/lib/branchdb/daemon
USER 10001:10001
WORKDIR /var/lib/branchdb
EXPOSE 8765
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('BRANCHDB_PORT', '8765')}/v1/health\", timeout=2)"]
ENTRYPOINT ["branchdb"]
CMD ["serve"]
