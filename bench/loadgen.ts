// The one load generator of bench/compare: closed loops (each client sends
// its next invocation when the previous one has answered) against one
// system for a warm-up and then a measured window; prints one JSON line with
// invocations/s, p50/p99 latency and the CPU seconds each watched process
// used during the window.
//
//   node loadgen.ts --system durable|restate|dbos|plain --workload greeter|steps|counter
//                   --concurrency N --duration S [--warmup S] [--keys 100]
//                   [--url http://127.0.0.1:PORT] [--pg postgresql://…]
//                   [--cpu NAME=PID] [--cpu-tree NAME=PID] …
//
// durable: one `pg` connection per client; each invocation is
//   SELECT durable.send(…) (committed on its own), then SELECT durable.await(id).
// restate: POST <ingress>/Service/handler (request-response), keep-alive.
// dbos, plain: POST <url>/greet | /steps | /counter/<key>/add, keep-alive.
// --cpu counts a process (all its threads); --cpu-tree a process, its live
// children and its reaped ones (PostgreSQL's postmaster and its backends).

import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import pg from "pg";

type Opts = Record<string, string>;
const opts: Opts = {};
const cpuWatch: { name: string; pid: number; tree: boolean }[] = [];
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, "");
  const v = process.argv[i + 1];
  if (k === "cpu" || k === "cpu-tree") {
    const [name, pid] = v.split("=");
    cpuWatch.push({ name, pid: Number(pid), tree: k === "cpu-tree" });
  } else opts[k] = v;
}
const system = opts.system;
const workload = opts.workload;
const concurrency = Number(opts.concurrency ?? 1);
const durationS = Number(opts.duration ?? 20);
const warmupS = Number(opts.warmup ?? 2);
const keys = Number(opts.keys ?? 100);

// ------------------------------------------------------------ CPU accounting

const clkTck = 100; // USER_HZ on Linux
function statFields(pid: number): number[] | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return s.slice(s.lastIndexOf(")") + 2).split(" ").map(Number);
  } catch {
    return null;
  }
}
// utime, stime, cutime, cstime are fields 14-17 of stat, i.e. 11-14 after ") ".
// A process tree's CPU is split by what each live child is, from its process
// title (PostgreSQL's backend types); "exited" is the time of children reaped
// during the window (and the parent's own).
function childKind(pid: number): string {
  let title = "";
  try {
    title = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
  } catch {
    /* gone */
  }
  if (/durable dispatcher/.test(title)) return "dispatchers";
  if (/autovacuum/.test(title)) return "autovacuum";
  if (/checkpointer|background writer|walwriter|logical replication|archiver|stats/.test(title)) return "background";
  return "backends";
}
type TreeSnap = { total: number; parts: Record<string, number> };
function cpuSeconds(pid: number, tree: boolean): TreeSnap {
  const f = statFields(pid);
  if (!f) return { total: 0, parts: {} };
  const own = f[11] + f[12];
  if (!tree) return { total: own / clkTck, parts: {} };
  const parts: Record<string, number> = { exited: (own + f[13] + f[14]) / clkTck };
  let total = parts.exited;
  let children: string[] = [];
  try {
    children = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/);
  } catch {
    /* gone */
  }
  for (const c of children) {
    const cf = c ? statFields(Number(c)) : null;
    if (!cf) continue;
    const kind = childKind(Number(c));
    parts[kind] = (parts[kind] ?? 0) + (cf[11] + cf[12]) / clkTck;
    total += (cf[11] + cf[12]) / clkTck;
  }
  return { total, parts };
}
function cpuSnapshot(): { cpu: Record<string, number>; parts: Record<string, number> } {
  const cpu: Record<string, number> = {};
  const parts: Record<string, number> = {};
  for (const w of cpuWatch) {
    const s = cpuSeconds(w.pid, w.tree);
    cpu[w.name] = (cpu[w.name] ?? 0) + s.total;
    for (const [k, v] of Object.entries(s.parts)) parts[`${w.name} ${k}`] = (parts[`${w.name} ${k}`] ?? 0) + v;
  }
  const self = process.cpuUsage();
  cpu.loadgen = (self.user + self.system) / 1e6;
  return { cpu, parts };
}

// ------------------------------------------------------------ invokers

let seq = 0;
const nextKey = () => `k${seq++ % keys}`;

type Invoke = () => Promise<void>;

function httpInvoker(base: string): () => Invoke {
  const u = new URL(base);
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const post = (path: string, body: string) =>
    new Promise<void>((resolve, reject) => {
      const req = http.request(
        {
          agent,
          host: u.hostname,
          port: u.port,
          method: "POST",
          path,
          headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            if (res.statusCode === 200) resolve();
            else reject(new Error(`HTTP ${res.statusCode} ${path}: ${Buffer.concat(chunks).toString().slice(0, 200)}`));
          });
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  const paths: Record<string, Record<string, () => [string, string]>> = {
    restate: {
      greeter: () => ["/BenchGreeter/greet", '"bench"'],
      steps: () => ["/BenchSteps/run", "{}"],
      counter: () => [`/BenchCounter/${nextKey()}/add`, "1"],
    },
    http: {
      greeter: () => ["/greet", '"bench"'],
      steps: () => ["/steps", "{}"],
      counter: () => [`/counter/${nextKey()}/add`, "1"],
    },
  };
  const make = paths[system === "restate" ? "restate" : "http"][workload];
  if (!make) throw new Error(`unknown workload ${workload}`);
  return () => () => post(...make());
}

const clients: pg.Client[] = [];
async function pgInvoker(conn: string): Promise<() => Invoke> {
  const send: Record<string, () => { text: string; values: string[] }> = {
    greeter: () => ({ text: "SELECT durable.send('BenchGreeter', 'greet', '\"bench\"'::jsonb)", values: [] }),
    steps: () => ({ text: "SELECT durable.send('BenchSteps', 'run', '{}'::jsonb)", values: [] }),
    counter: () => ({ text: "SELECT durable.send('BenchCounter', 'add', '1'::jsonb, key => $1)", values: [nextKey()] }),
  };
  const make = send[workload];
  if (!make) throw new Error(`unknown workload ${workload}`);
  for (let i = 0; i < concurrency; i++) {
    const c = new pg.Client({ connectionString: conn, application_name: "bench-loadgen" });
    await c.connect();
    clients.push(c);
  }
  let next = 0;
  return () => {
    const c = clients[next++];
    return async () => {
      const q = make();
      const r = await c.query({ name: `send-${workload}`, text: q.text, values: q.values, rowMode: "array" });
      await c.query({ name: "await", text: "SELECT durable.await($1, '5 min')", values: [r.rows[0][0]], rowMode: "array" });
    };
  };
}

// ------------------------------------------------------------ closed loops

const factory = system === "durable" ? await pgInvoker(opts.pg) : httpInvoker(opts.url);

const latencies: number[] = [];
let errors = 0;
let firstError = "";
let measuring = false;
let stopping = false;

async function loop(invoke: Invoke) {
  while (!stopping) {
    const t0 = performance.now();
    try {
      await invoke();
      if (measuring) latencies.push(performance.now() - t0);
    } catch (e) {
      if (measuring) errors++;
      if (!firstError) firstError = String((e as Error)?.message ?? e);
      await new Promise((r) => setTimeout(r, 10)); // do not spin on a dead target
    }
  }
}

const running = Array.from({ length: concurrency }, () => loop(factory()));
await new Promise((r) => setTimeout(r, warmupS * 1000));
latencies.length = 0;
errors = 0;
firstError = "";
const cpu0 = cpuSnapshot();
const t0 = performance.now();
measuring = true;
await new Promise((r) => setTimeout(r, durationS * 1000));
measuring = false;
const wall = (performance.now() - t0) / 1000;
const cpu1 = cpuSnapshot();
stopping = true;
await Promise.all(running);
await Promise.all(clients.map((c) => c.end()));

latencies.sort((a, b) => a - b);
const pct = (p: number) =>
  latencies.length ? latencies[Math.min(latencies.length - 1, Math.ceil(p * latencies.length) - 1)] : NaN;
const delta = (a: Record<string, number>, b: Record<string, number>) => {
  const d: Record<string, number> = {};
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) d[k] = +((b[k] ?? 0) - (a[k] ?? 0)).toFixed(2);
  return d;
};
// A child that exited moves its time from its kind to "exited": net them.
const cpu = delta(cpu0.cpu, cpu1.cpu);
const cpuParts = delta(cpu0.parts, cpu1.parts);

console.log(
  JSON.stringify({
    system,
    workload,
    concurrency,
    wall: +wall.toFixed(2),
    completed: latencies.length,
    errors,
    firstError: firstError || undefined,
    rate: +(latencies.length / wall).toFixed(1),
    p50: +pct(0.5).toFixed(2),
    p99: +pct(0.99).toFixed(2),
    cpu,
    cpuParts,
    cores: os.cpus().length,
  }),
);
process.exit(0);
