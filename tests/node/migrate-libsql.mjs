// Apply a drizzle-kit migrations folder with drizzle-orm's REAL libSQL migrator,
// then print the ledger rows as one JSON line on stdout.
//
//   node migrate-libsql.mjs <migrationsFolder> <file:/abs/path.db | libsql://... | http://...> [migrationsTable]
//
// Output: {"rows":[{"id":...,"hash":"...","created_at":...}, ...]} in rowid order.
import { createClient } from "@libsql/client";
import { drizzle } from "drizzle-orm/libsql";
import { migrate } from "drizzle-orm/libsql/migrator";

const [folder, url, table = "__drizzle_migrations"] = process.argv.slice(2);
if (!folder || !url) {
  console.error("usage: node migrate-libsql.mjs <migrationsFolder> <url>");
  process.exit(2);
}

const client = createClient({ url, intMode: "number" });
try {
  const db = drizzle(client);
  await migrate(db, { migrationsFolder: folder, migrationsTable: table });
  const res = await client.execute(
    `SELECT id, hash, created_at FROM "${table}" ORDER BY rowid`,
  );
  const rows = res.rows.map((r) => ({ id: r.id, hash: r.hash, created_at: r.created_at }));
  process.stdout.write(JSON.stringify({ rows }) + "\n");
} finally {
  client.close();
}
