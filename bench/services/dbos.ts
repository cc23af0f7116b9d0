// The bench/compare workloads as DBOS workflows, behind a small HTTP server
// in the same process (the load generator drives every system over the
// network from its own process, so its CPU is counted apart).
//
//   PORT=0 DBOS_DATABASE_URL=postgresql://… DBOS_POOL=64 node dbos.ts
//
// POST /greet "name"          workflow that returns greet(name); no step
// POST /steps                 workflow of 10 DBOS.runStep steps
// POST /counter/<key>/add n   workflow with one transaction (PostgresDataSource):
//                             reads the key's row FOR UPDATE, writes addTo(count, n)
//
// The system database and the application table (bench_counter, made by
// bench/compare) are in the same database.
// Prints "ready <port>" once DBOS is launched and the server listens.

import http from "node:http";
import { DBOS } from "@dbos-inc/dbos-sdk";
import { PostgresDataSource } from "@dbos-inc/postgres-datasource";
import { addTo, greet, step, stepsResult, STEPS } from "./work.ts";

const url = process.env.DBOS_DATABASE_URL;
if (!url) throw new Error("DBOS_DATABASE_URL is not set");
const pool = Number(process.env.DBOS_POOL ?? 10);

DBOS.setConfig({
  name: "bench-compare",
  systemDatabaseUrl: url,
  systemDatabasePoolSize: pool,
  logLevel: process.env.DBOS_LOG_LEVEL ?? "warn",
});

const appDb = new PostgresDataSource("bench-app", { connection: { application_name: "dbos-app" }, max: pool, ...parseUrl(url) });

function parseUrl(u: string) {
  const p = new URL(u);
  return {
    host: p.hostname,
    port: Number(p.port || 5432),
    user: decodeURIComponent(p.username),
    database: p.pathname.slice(1),
  };
}

const greetWorkflow = DBOS.registerWorkflow(async (name: string) => greet(name), { name: "greet" });

const stepsWorkflow = DBOS.registerWorkflow(
  async () => {
    let acc = 0;
    for (let i = 1; i <= STEPS; i++) {
      const r = await DBOS.runStep(async () => step(i), { name: `step-${i}` });
      acc += r.v;
    }
    return stepsResult(acc);
  },
  { name: "steps" },
);

const addTransaction = appDb.registerTransaction(
  async (key: string, n: number) => {
    const sql = PostgresDataSource.client;
    const rows = await sql`SELECT count FROM bench_counter WHERE key = ${key} FOR UPDATE`;
    const count = addTo(rows.length ? Number(rows[0].count) : 0, n);
    await sql`INSERT INTO bench_counter (key, count) VALUES (${key}, ${count})
              ON CONFLICT (key) DO UPDATE SET count = excluded.count`;
    return count;
  },
  { name: "add" },
);

const counterWorkflow = DBOS.registerWorkflow(async (key: string, n: number) => addTransaction(key, n), {
  name: "counterAdd",
});

async function handle(path: string, input: unknown): Promise<unknown> {
  if (path === "/greet") return greetWorkflow(String(input));
  if (path === "/steps") return stepsWorkflow();
  const m = /^\/counter\/([^/]+)\/add$/.exec(path);
  if (m) return counterWorkflow(m[1], Number(input ?? 1));
  throw new Error(`no route ${path}`);
}

await PostgresDataSource.initializeDBOSSchema(parseUrl(url));
await DBOS.launch();

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString();
    handle(req.url ?? "", body ? JSON.parse(body) : null).then(
      (out) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(out));
      },
      (err: Error) => {
        res.writeHead(500, { "content-type": "text/plain" });
        res.end(String(err?.message ?? err));
      },
    );
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT ?? 9091), "127.0.0.1", () => {
  const addr = server.address();
  console.log(`ready ${typeof addr === "object" && addr ? addr.port : "?"}`);
});

for (const sig of ["SIGTERM", "SIGINT"] as const) {
  process.on(sig, () => {
    server.close();
    DBOS.shutdown().finally(() => process.exit(0));
  });
}
