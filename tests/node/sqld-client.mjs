// A preview environment's view of a branch database on a libsql server: only
// DATABASE_URL and DATABASE_AUTH_TOKEN, through the real @libsql/client.
//
//   node --require ./resolve-localhost.cjs sqld-client.mjs rw <table> <text>
//       creates <table>(v TEXT) if missing, inserts <text>, prints {"rows": [...]}
//   node ... sqld-client.mjs read <sql>
//       prints {"rows": [...]} of <sql>
//   node ... sqld-client.mjs migrate <drizzle folder>
//       drizzle-orm's libsql migrator, then {"rows": ledger rows}
// Errors print {"error": message, "code": code} and exit 1.
import { createClient } from "@libsql/client";
import { drizzle } from "drizzle-orm/libsql";
import { migrate } from "drizzle-orm/libsql/migrator";

const [action, arg1, arg2] = process.argv.slice(2);
const client = createClient({
  url: process.env.DATABASE_URL,
  authToken: process.env.DATABASE_AUTH_TOKEN,
  intMode: "number",
});
const rows = (res) => res.rows.map((r) => Object.fromEntries(res.columns.map((c) => [c, r[c]])));
try {
  let out;
  if (action === "rw") {
    await client.execute(`CREATE TABLE IF NOT EXISTS "${arg1}" (v TEXT)`);
    await client.execute({ sql: `INSERT INTO "${arg1}" (v) VALUES (?)`, args: [arg2] });
    out = rows(await client.execute(`SELECT v FROM "${arg1}" ORDER BY rowid`));
  } else if (action === "read") {
    out = rows(await client.execute(arg1));
  } else if (action === "migrate") {
    await migrate(drizzle(client), { migrationsFolder: arg1 });
    out = rows(
      await client.execute('SELECT hash, created_at FROM "__drizzle_migrations" ORDER BY rowid'),
    );
  } else {
    throw new Error(`unknown action ${action}`);
  }
  process.stdout.write(JSON.stringify({ rows: out }) + "\n");
} catch (e) {
  process.stdout.write(JSON.stringify({ error: String(e.message ?? e), code: e.code ?? null }) + "\n");
  process.exitCode = 1;
} finally {
  client.close();
}
