// drizzle-kit config for the PostgreSQL fixtures. Run from tests/node with
// STAGE=1|2|3 (see tests/node/README.md and schema/regenerate.sh).
import { defineConfig } from "drizzle-kit";

const stage = process.env.STAGE ?? "3";

export default defineConfig({
  dialect: "postgresql",
  schema: `./schema/pg/stage${stage}.ts`,
  out: "../fixtures/drizzle/pg",
});
