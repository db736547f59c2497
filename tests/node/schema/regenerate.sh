#!/bin/sh
# Regenerate the drizzle-kit fixtures under tests/fixtures/drizzle/ from the
# staged schemas in tests/node/schema/, with the drizzle-kit pinned in
# tests/node/package-lock.json. Usage (from anywhere): tests/node/schema/regenerate.sh
# Needs `npm ci` to have been run in tests/node first. No database is needed.
set -eu

NODE_DIR=$(cd "$(dirname "$0")/.." && pwd)
FIX="$NODE_DIR/../fixtures/drizzle"
REPO="$NODE_DIR/../.."
cd "$NODE_DIR"

for dialect in sqlite pg; do
  rm -rf "$FIX/$dialect" "$FIX/$dialect-stage1" "$FIX/$dialect-stage2" "$FIX/$dialect-stage3"
  stage=1
  for name in init products nickname_coupons; do
    STAGE=$stage npx --no-install drizzle-kit generate \
      --config "schema/drizzle.$dialect.config.ts" --name "$name"
    cp -R "$FIX/$dialect" "$FIX/$dialect-stage$stage"
    stage=$((stage + 1))
  done
done

# The example app ships "main" = stages 1-2 of the SQLite history.
rm -rf "$REPO/examples/shop/drizzle"
mkdir -p "$REPO/examples/shop"
cp -R "$FIX/sqlite-stage2" "$REPO/examples/shop/drizzle"
