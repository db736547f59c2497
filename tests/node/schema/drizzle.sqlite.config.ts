// drizzle-kit config for the SQLite fixtures. Run from tests/node with
// STAGE=1|2|3 (see tests/node/README.md and schema/regenerate.sh).
import { defineConfig } from "drizzle-kit";

const stage = process.env.STAGE ?? "3";

export default defineConfig({
  dialect: "sqlite",
  schema: `./schema/sqlite/stage${stage}.ts`,
  out: "../fixtures/drizzle/sqlite",
});
