// Apply a drizzle-kit migrations folder with drizzle-orm's REAL node-postgres
// migrator, then print the ledger rows as one JSON line on stdout.
//
//   node migrate-pg.mjs <migrationsFolder> <postgresql://user@host:port/db> [migrationsTable [migrationsSchema]]
//
// Output: {"rows":[{"id":...,"hash":"...","created_at":...}, ...]} in id order.
// created_at is a bigint column: it is returned as a JSON number.
import pg from "pg";
import { drizzle } from "drizzle-orm/node-postgres";
import { migrate } from "drizzle-orm/node-postgres/migrator";

const [folder, url, table = "__drizzle_migrations", schema = "drizzle"] =
  process.argv.slice(2);
if (!folder || !url) {
  console.error("usage: node migrate-pg.mjs <migrationsFolder> <postgresql://...>");
  process.exit(2);
}

const client = new pg.Client({ connectionString: url });
await client.connect();
try {
  const db = drizzle(client);
  await migrate(db, {
    migrationsFolder: folder,
    migrationsTable: table,
    migrationsSchema: schema,
  });
  const res = await client.query(
    `SELECT id, hash, created_at FROM "${schema}"."${table}" ORDER BY id`,
  );
  const rows = res.rows.map((r) => ({
    id: Number(r.id),
    hash: r.hash,
    created_at: r.created_at === null ? null : Number(r.created_at),
  }));
  process.stdout.write(JSON.stringify({ rows }) + "\n");
} finally {
  await client.end();
}
