// Stage 3 of the "shop" schema (SQLite / libSQL), the "feature branch" change:
// adds users.nickname and a coupons table.
import { sql } from "drizzle-orm";
import { index, integer, sqliteTable, text } from "drizzle-orm/sqlite-core";

export const users = sqliteTable("users", {
  id: integer("id").primaryKey(),
  email: text("email").notNull().unique(),
  name: text("name"),
  createdAt: integer("created_at", { mode: "timestamp" })
    .notNull()
    .default(sql`(unixepoch())`),
  nickname: text("nickname"),
});

export const orders = sqliteTable("orders", {
  id: integer("id").primaryKey(),
  userId: integer("user_id")
    .notNull()
    .references(() => users.id),
  total: integer("total").notNull(),
});

export const products = sqliteTable(
  "products",
  {
    id: integer("id").primaryKey(),
    sku: text("sku").notNull(),
    name: text("name").notNull(),
    priceCents: integer("price_cents").notNull(),
  },
  (t) => [index("products_name_idx").on(t.name)],
);

export const coupons = sqliteTable("coupons", {
  id: integer("id").primaryKey(),
  code: text("code").notNull().unique(),
  percentOff: integer("percent_off").notNull(),
});
