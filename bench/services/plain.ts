// The bench/compare workloads with no durability: a plain node:http server
// calling the functions of work.ts directly (counts kept in memory).
//
//   PORT=0 node plain.ts        prints "ready <port>" once listening
//
// POST /greet "name"   POST /steps   POST /counter/<key>/add n

import http from "node:http";
import { addTo, greet, step, stepsResult, STEPS } from "./work.ts";

const counts = new Map<string, number>();

async function handle(path: string, input: unknown): Promise<unknown> {
  if (path === "/greet") return greet(String(input));
  if (path === "/steps") {
    let acc = 0;
    for (let i = 1; i <= STEPS; i++) acc += (await (async () => step(i))()).v;
    return stepsResult(acc);
  }
  const m = /^\/counter\/([^/]+)\/add$/.exec(path);
  if (m) {
    const count = addTo(counts.get(m[1]) ?? 0, Number(input ?? 1));
    counts.set(m[1], count);
    return count;
  }
  throw new Error(`no route ${path}`);
}

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
        res.writeHead(404, { "content-type": "text/plain" });
        res.end(err.message);
      },
    );
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT ?? 9090), "127.0.0.1", () => {
  const addr = server.address();
  console.log(`ready ${typeof addr === "object" && addr ? addr.port : "?"}`);
});
