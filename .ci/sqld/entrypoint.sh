#!/bin/bash
# The official libsql-server image's contract: a command starting with /bin/sqld gets
# --db-path, --http-listen-addr (and, for a primary, --grpc-listen-addr) from the
# environment; anything else runs as given.
set -Eeuo pipefail
if [ "${1:-}" = /bin/sqld ]; then
  args=(--db-path "${SQLD_DB_PATH:-iku.db}"
        --http-listen-addr "${SQLD_HTTP_LISTEN_ADDR:-0.0.0.0:8080}")
  if [ "${SQLD_NODE:-primary}" = primary ]; then
    args+=(--grpc-listen-addr "${SQLD_GRPC_LISTEN_ADDR:-0.0.0.0:5001}")
  fi
  set -- "$@" "${args[@]}"
fi
exec "$@"
