// Test deployment for durable: the services of services.ts behind the real
// Restate SDK endpoint handler, plus test-only controls in front of it.
//
//   PORT=9080 H1_PORT=9081 DURABLE_TEST_LOG=/tmp/effects.jsonl node server.ts
//
// PORT      h2c (HTTP/2 prior knowledge) server, BIDI_STREAM mode; default 9080, 0 = any
// H1_PORT   optional HTTP/1.1 server, REQUEST_RESPONSE mode, same services
// TLS_PORT  optional HTTP/2-over-TLS server (ALPN "h2" only), BIDI_STREAM mode,
//           same services; needs TLS_CERT and TLS_KEY (PEM files)
// DURABLE_TEST_LOG  side-effect log (JSON lines), see effects.ts
// DURABLE_TEST_LOG_REQUESTS=1  also log one line per invoke request
// PID_FILE  optional, receives the process id
//
// All servers bind 127.0.0.1 only.  Prints "h1 <port>" (if H1_PORT is set),
// "tls <port>" (if TLS_PORT is set) and then "ready <port>" on stdout once
// listening; SDK logs go to stderr.
// See README.md for the control endpoints.

import fs from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import { randomBytes } from "node:crypto";
import * as restate from "@restatedev/restate-sdk";
import { Counter, Extra, Greeter, Probe, Steps } from "./services.ts";
import { writeLine } from "./effects.ts";
import { Approvals, AwakeableHolder, TestUtilsService, VirtualObjectCommandInterpreter } from "./signals.ts";
import { appServices } from "./apps.ts";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
// What we use of http.ServerResponse and http2.Http2ServerResponse (their
// union is not callable in TypeScript, so describe the common part).
interface Res {
  readonly headersSent: boolean;
  writeHead(status: number, headers?: Record<string, string | string[]>): unknown;
  flushHeaders?(): void; // present at runtime on both, missing in @types/node for http2
  write(data: string | Uint8Array): boolean;
  end(data?: string | Uint8Array): unknown;
  destroy(): unknown;
  on(event: "close" | "error" | "drain", listener: (...args: unknown[]) => void): unknown;
  once(event: "close" | "drain", listener: (...args: unknown[]) => void): unknown;
  readonly stream?: http2.ServerHttp2Stream; // HTTP/2 only
}
type Handler = (req: Req, res: Res) => void;

const INVOCATION_CT = "application/vnd.restate.invocation.v6";
const MANIFEST_CT = "application/vnd.restate.endpointmanifest.v3+json";
const LOG_REQUESTS = process.env.DURABLE_TEST_LOG_REQUESTS === "1";
const HANG_MAX_MS = Number(process.env.MISBEHAVE_HANG_MAX_MS ?? 30 * 60 * 1000);

// ---------------------------------------------------------------- logging

const LEVELS: Record<string, number> = { trace: 1, debug: 2, info: 3, warn: 4, error: 5 };
const minLevel = LEVELS[(process.env.RESTATE_LOGGING ?? "info").toLowerCase()] ?? 3;

// Like the SDK's console logger, but everything goes to stderr so that stdout
// carries only our "ready" line.
const stderrLogger: restate.LoggerTransport = (params, message, ...rest) => {
  if (params.replaying || (LEVELS[params.level] ?? 3) < minLevel) return;
  const c = params.context;
  const where = c ? `[${c.invocationTarget}][${c.invocationId}]` : "";
  console.error(`[restate][${new Date().toISOString()}]${where} ${params.level.toUpperCase()}:`, message, ...rest);
};

// ---------------------------------------------------------------- variants

// createEndpointHandler picks BIDI_STREAM for HTTP/2 and REQUEST_RESPONSE for
// HTTP/1.1 requests (the latter is what endpoint().http1Handler() does).
function sdkHandler(services: Parameters<typeof restate.createEndpointHandler>[0]["services"]): Handler {
  const handler = restate.createEndpointHandler({ services, logger: stderrLogger });
  // It takes either an HTTP/1.1 or an HTTP/2 request/response pair.
  return (req, res) => handler(req as http.IncomingMessage, res as unknown as http.ServerResponse);
}

// Variant 2 is the same deployment plus the Extra service.
const variants: Record<number, Handler> = {
  1: sdkHandler([Greeter, Steps, Probe, Counter]),
  2: sdkHandler([Greeter, Steps, Probe, Counter, Extra]),
};
let currentVariant = 1;

// Paths under /signals/ reach variant 1 plus the awakeable and signal
// services of signals.ts (register http://…/signals as the deployment).
// They are kept out of variant 1 so that its service list, which the
// regression suite prints, stays as it is.
const signalsVariant = sdkHandler([
  Greeter,
  Steps,
  Probe,
  Counter,
  Approvals,
  AwakeableHolder,
  TestUtilsService,
  VirtualObjectCommandInterpreter,
]);

// Paths under /apps/ reach variant 1 plus the services of apps.ts (calls,
// sagas, workflows, call trees; register http://…/apps), kept out of
// variant 1 for the same reason.
const appsVariant = sdkHandler([Greeter, Steps, Probe, Counter, ...appServices]);

// ---------------------------------------------------------------- misbehaviour

const MODES = [
  "garbage",
  "truncate",
  "http500",
  "hang",
  "oversize",
  "invalid_utf8",
  "reset",
  "http302",
  "http404",
  "http400",
  "huge_frame",
  "stream_max",
  "propose_unknown",
  "after_output",
  "double_output",
  "sleep_forever",
] as const;
type Mode = (typeof MODES)[number];
// size and frames only matter to stream_max.
type Rule = { mode: Mode; match: string | null; remaining: number; size: number; frames: number };

let rules: Rule[] = [];
const hanging = new Set<Res>();

function takeRule(target: string): Rule | undefined {
  const rule = rules.find(
    (r) => r.remaining > 0 && (r.match === null || target === r.match || target.startsWith(r.match + "/")),
  );
  if (rule) {
    rule.remaining--;
    rules = rules.filter((r) => r.remaining > 0);
  }
  return rule;
}

function frameHeader(type: number, length: number): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(type, 0);
  h.writeUInt16BE(0, 2);
  h.writeUInt32BE(length, 4);
  return h;
}

// ---- protobuf by hand: just the field kinds the protocol messages below use.

function varint(n: number | bigint): Buffer {
  const out: number[] = [];
  let v = BigInt(n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return Buffer.from(out);
}

function uintField(field: number, value: number | bigint): Buffer {
  return Buffer.concat([varint(field << 3), varint(value)]);
}

function bytesField(field: number, value: Buffer | string): Buffer {
  const b = typeof value === "string" ? Buffer.from(value, "utf8") : value;
  return Buffer.concat([varint((field << 3) | 2), varint(b.length), b]);
}

function frame(type: number, body: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([frameHeader(type, body.length), body]);
}

const MSG = {
  suspension: 0x0001,
  error: 0x0002,
  end: 0x0003,
  proposeRunCompletion: 0x0005,
  output: 0x0401,
  setState: 0x0403,
  sleep: 0x040c,
  run: 0x0411,
};

// OutputCommandMessage { Value value = 14 { bytes content = 1 } }
const outputValue = (json: Buffer | string) => frame(MSG.output, bytesField(14, bytesField(1, json)));
// ErrorMessage { uint32 code = 1; string message = 2 }
const errorMessage = (code: number, message: Buffer | string) =>
  frame(MSG.error, Buffer.concat([uintField(1, code), bytesField(2, message)]));
// RunCommandMessage { uint32 result_completion_id = 11; string name = 12 }
const runCommand = (completionId: number, name: Buffer | string) =>
  frame(MSG.run, Buffer.concat([uintField(11, completionId), bytesField(12, name)]));
// ProposeRunCompletionMessage { uint32 result_completion_id = 1; bytes value = 14 }
const proposeRun = (completionId: number, value: Buffer | string) =>
  frame(MSG.proposeRunCompletion, Buffer.concat([uintField(1, completionId), bytesField(14, value)]));
// SuspensionMessage { repeated uint32 waiting_completions = 1 }
const suspension = (completionId: number) => frame(MSG.suspension, uintField(1, completionId));
// SetStateCommandMessage { bytes key = 1; Value value = 3 }
const setState = (key: string, json: string) =>
  frame(MSG.setState, Buffer.concat([bytesField(1, key), bytesField(3, bytesField(1, json))]));
const end = () => frame(MSG.end);
// SleepCommandMessage { uint64 wake_up_time = 1; uint32 result_completion_id = 11 }
const sleepUntil = (unixMs: bigint, completionId: number) =>
  frame(MSG.sleep, Buffer.concat([uintField(1, unixMs), uintField(11, completionId)]));

// Bytes that are not UTF-8: a lone continuation byte, an overlong "/", a
// truncated 3-byte sequence, 0xFF.
const BAD_UTF8 = Buffer.from([0x80, 0xc0, 0xaf, 0xe2, 0x82, 0xff]);
const bad = (before: string, after: string) => Buffer.concat([Buffer.from(before), BAD_UTF8, Buffer.from(after)]);

// invalid_utf8 answers an invocation's first request with an Error and the
// next with a completed run and output, so both kinds of text get tested.
const invalidUtf8Served = new Map<string, number>();

// Writes frames one after the other, respecting backpressure, until done or
// the client goes away.
function streamFrames(res: Res, count: number, next: (i: number) => Buffer, done: () => void): void {
  let closed = false;
  res.on("close", () => (closed = true));
  let i = 0;
  const pump = () => {
    while (!closed && i < count) {
      if (!res.write(next(i++))) {
        res.once("drain", pump);
        return;
      }
    }
    if (!closed) done();
  };
  pump();
}

function misbehave(rule: Rule, path: string, req: Req, res: Res): void {
  const mode = rule.mode;
  const inv = (req.headers["x-restate-invocation-id"] as string | undefined) ?? null;
  writeLine({ misbehave: mode, path, inv, ts: Date.now() });
  // Swallow the request body (the runtime may still be streaming it).
  req.on("error", () => {});
  res.on("error", () => {});
  req.resume();

  const headers = {
    "content-type": req.headers["content-type"] ?? INVOCATION_CT,
    "x-restate-server": "durable-test-misbehave",
  };
  switch (mode) {
    case "http500":
      res.writeHead(500, { "content-type": "text/plain" });
      res.end(`misbehave: http500 for ${path}\n`);
      return;
    case "garbage": {
      // A complete frame of an unknown control message type (0x03FF) with a
      // random payload: parseable framing, meaningless content.
      const payload = randomBytes(56);
      res.writeHead(200, headers);
      res.end(Buffer.concat([frameHeader(0x03ff, payload.length), payload]));
      return;
    }
    case "truncate":
      // OutputCommand announcing 100 bytes, only 10 of them sent.
      res.writeHead(200, headers);
      res.end(Buffer.concat([frameHeader(0x0401, 100), randomBytes(10)]));
      return;
    case "oversize":
      // OutputCommand announcing a 1 GiB body, 64 bytes sent.
      res.writeHead(200, headers);
      res.end(Buffer.concat([frameHeader(0x0401, 1 << 30), randomBytes(64)]));
      return;
    case "http302":
      res.writeHead(302, { location: "http://127.0.0.1:1/elsewhere", "content-type": "text/plain" });
      res.end(`misbehave: http302 for ${path}\n`);
      return;
    case "http404":
      res.writeHead(404, { "content-type": "text/plain" });
      res.end(`misbehave: http404 for ${path}\n`);
      return;
    case "http400":
      res.writeHead(400, { "content-type": "text/plain" });
      res.end(`misbehave: http400 for ${path}\n`);
      return;
    case "huge_frame":
      // A Run command announcing 2^32-1 bytes (the most a header can say).
      res.writeHead(200, headers);
      res.end(Buffer.concat([frameHeader(MSG.run, 0xffffffff), randomBytes(64)]));
      return;
    case "reset": {
      // Headers and half a frame, then the stream (HTTP/2) or the
      // connection (HTTP/1.1) is reset.
      res.writeHead(200, headers);
      res.write(Buffer.concat([frameHeader(MSG.output, 100), randomBytes(40)]));
      setTimeout(() => {
        if (res.stream) res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        else req.socket.destroy();
      }, 50);
      return;
    }
    case "stream_max": {
      // rule.frames frames of rule.size bytes each (unknown control type
      // 0x03FF, zeros), no terminal message: each one as large as
      // durable.max_message_size allows, to fill the dispatcher's memory.
      const body = Buffer.alloc(rule.size);
      const one = frame(0x03ff, body);
      res.writeHead(200, headers);
      streamFrames(res, rule.frames, () => one, () => res.end());
      return;
    }
    case "invalid_utf8": {
      const key = inv ?? "";
      const served = invalidUtf8Served.get(key) ?? 0;
      invalidUtf8Served.set(key, served + 1);
      res.writeHead(200, headers);
      if (served % 2 === 0) {
        res.end(errorMessage(500, bad("invalid utf8 <", ">")));
        return;
      }
      // Input is entry 0, so the run gets completion id 1.
      res.end(
        Buffer.concat([
          runCommand(1, bad("step-", "")),
          proposeRun(1, bad('"run ', '"')),
          outputValue(bad('{"out": "', '"}')),
          end(),
        ]),
      );
      return;
    }
    case "propose_unknown":
      // No Run command has completion id 4242 in this journal.
      res.writeHead(200, headers);
      res.end(Buffer.concat([proposeRun(4242, '"bogus"'), suspension(4242)]));
      return;
    case "after_output":
      res.writeHead(200, headers);
      res.end(Buffer.concat([outputValue('"first"'), setState("after", '"output"'), end()]));
      return;
    case "double_output":
      res.writeHead(200, headers);
      res.end(Buffer.concat([outputValue('"first"'), outputValue('"second"'), end()]));
      return;
    case "sleep_forever":
      // A Sleep until 2^64 - 1 ms after the epoch, then suspend on it.
      res.writeHead(200, headers);
      res.end(Buffer.concat([sleepUntil(2n ** 64n - 1n, 1), suspension(1)]));
      return;
    case "hang": {
      res.writeHead(200, headers);
      res.flushHeaders?.();
      hanging.add(res);
      // Never answer; drop the stream only when the client gives up (or,
      // as a safety net, after MISBEHAVE_HANG_MAX_MS).
      const timer = setTimeout(() => res.destroy(), HANG_MAX_MS);
      timer.unref();
      res.on("close", () => {
        clearTimeout(timer);
        hanging.delete(res);
      });
      return;
    }
  }
}

// ---------------------------------------------------------------- crafted manifests

// Manifests queued by POST /control/manifest: each answers one later
// GET .../discover (on any port and path), oldest first, instead of the SDK.
let craftedManifests: string[] = [];

function serveCraftedManifest(path: string, res: Res): boolean {
  if (!path.endsWith("/discover") || craftedManifests.length === 0) return false;
  const body = craftedManifests.shift() as string;
  res.writeHead(200, { "content-type": MANIFEST_CT, "x-restate-server": "durable-test-crafted" });
  res.end(body);
  return true;
}

// ---------------------------------------------------------------- controls

async function readBody(req: Req): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function sendJson(res: Res, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body) + "\n");
}

function misbehaveState() {
  return { rules: rules.map((r) => ({ ...r })), hanging: hanging.size };
}

async function control(path: string, req: Req, res: Res): Promise<void> {
  const method = req.method ?? "GET";
  let body: Record<string, unknown> = {};
  const text = await readBody(req);
  if (method === "POST" && text.trim()) {
    try {
      body = JSON.parse(text);
    } catch {
      return sendJson(res, 400, { error: "body is not JSON" });
    }
  }

  if (path === "/control/misbehave") {
    if (method === "DELETE" || (method === "POST" && (body.mode === "off" || body.mode === "none"))) {
      rules = [];
      return sendJson(res, 200, misbehaveState());
    }
    if (method === "POST") {
      const mode = String(body.mode);
      if (!(MODES as readonly string[]).includes(mode))
        return sendJson(res, 400, { error: `unknown mode ${mode}`, modes: MODES });
      const count = body.count === undefined ? 1 : Number(body.count);
      if (!Number.isInteger(count) || count < 0) return sendJson(res, 400, { error: "count must be an integer >= 0" });
      const match = typeof body.match === "string" && body.match !== "" ? body.match.replace(/^\/+|\/+$/g, "") : null;
      const size = body.size === undefined ? 1024 * 1024 : Number(body.size);
      const frames = body.frames === undefined ? 8 : Number(body.frames);
      if (!Number.isInteger(size) || size < 0 || size > 1 << 30 || !Number.isInteger(frames) || frames < 0)
        return sendJson(res, 400, { error: "size must be an integer in [0, 2^30], frames an integer >= 0" });
      if (count > 0) rules.push({ mode: mode as Mode, match, remaining: count, size, frames });
      return sendJson(res, 200, misbehaveState());
    }
    return sendJson(res, 200, misbehaveState());
  }

  if (path === "/control/manifest") {
    if (method === "DELETE") craftedManifests = [];
    else if (method === "POST") {
      if (!("manifest" in body)) return sendJson(res, 400, { error: 'body must be {"manifest": ...}' });
      craftedManifests.push(JSON.stringify(body.manifest));
    }
    return sendJson(res, 200, { pending: craftedManifests.length });
  }

  if (path === "/control/variant") {
    if (method === "POST") {
      const v = Number(body.variant);
      if (!(v in variants)) return sendJson(res, 400, { error: "variant must be 1 or 2" });
      currentVariant = v;
    }
    return sendJson(res, 200, { variant: currentVariant });
  }

  return sendJson(res, 404, { error: `no control ${path}` });
}

// ---------------------------------------------------------------- routing

function discoveryFixture(path: string, res: Res): boolean {
  // GET /redirect/<status>/<percent-encoded Location>/discover: a redirect
  // answer, for the tests that check durable never follows one.
  const redirect = /^\/redirect\/(30[0-8])\/([^/]+)\/discover$/.exec(path);
  if (redirect) {
    res.writeHead(Number(redirect[1]), { location: decodeURIComponent(redirect[2]), "content-type": "text/plain" });
    res.end("moved\n");
    return true;
  }
  switch (path) {
    case "/broken/discover":
      res.writeHead(200, { "content-type": MANIFEST_CT });
      res.end("this is not json");
      return true;
    case "/notamanifest/discover":
      res.writeHead(200, { "content-type": MANIFEST_CT });
      res.end(`{"hello": "world"}`);
      return true;
    case "/missing/discover":
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("no deployment here\n");
      return true;
  }
  return false;
}

function route(req: Req, res: Res): void {
  const path = new URL(req.url ?? "/", "http://localhost").pathname;

  if (path.startsWith("/control/")) {
    control(path, req, res).catch((e) => {
      console.error("control error:", e);
      if (!res.headersSent) sendJson(res, 500, { error: String(e) });
    });
    return;
  }
  if (req.method === "GET" && (serveCraftedManifest(path, res) || discoveryFixture(path, res))) return;

  if (req.method === "POST") {
    const m = /\/invoke\/(.+)$/.exec(path);
    // One line per invocation attempt (HTTP request), when asked for: how
    // many requests an invocation took (one per attempt in request/response
    // mode, one in all for a streamed one that never suspended).
    if (m && LOG_REQUESTS)
      writeLine({ request: m[1], invocation: req.headers["x-restate-invocation-id"] ?? null, ts: Date.now() });
    const rule = m ? takeRule(m[1]) : undefined;
    if (rule) return misbehave(rule, path, req, res);
  }

  // /signals/... always reaches the variant with the services of signals.ts.
  if (path.startsWith("/signals/")) return signalsVariant(req, res);
  // /apps/... always reaches the variant with the services of apps.ts.
  if (path.startsWith("/apps/")) return appsVariant(req, res);
  // /v1/... and /v2/... always reach that variant (the SDK ignores path
  // prefixes before /discover and /invoke); everything else the current one.
  const pinned = /^\/v([12])\//.exec(path);
  const variant = pinned ? Number(pinned[1]) : currentVariant;
  variants[variant](req, res);
}

// ---------------------------------------------------------------- main

function listen(server: http.Server | http2.Http2Server | http2.Http2SecureServer, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      const addr = server.address();
      if (addr === null || typeof addr === "string") reject(new Error("unexpected server address"));
      else resolve(addr.port);
    });
  });
}

process.on("uncaughtException", (e) => console.error("uncaught exception:", e));
process.on("unhandledRejection", (e) => console.error("unhandled rejection:", e));
process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));

if (process.env.PID_FILE) fs.writeFileSync(process.env.PID_FILE, `${process.pid}\n`);

const h2 = http2.createServer((req, res) => route(req, res));
h2.on("sessionError", (e) => console.error("http2 session error:", e.message));
const port = await listen(h2, Number(process.env.PORT ?? 9080));

if (process.env.H1_PORT !== undefined && process.env.H1_PORT !== "") {
  const h1 = http.createServer((req, res) => route(req, res));
  h1.on("clientError", (e, socket) => socket.destroy(e));
  const h1Port = await listen(h1, Number(process.env.H1_PORT));
  process.stdout.write(`h1 ${h1Port}\n`);
}

if (process.env.TLS_PORT !== undefined && process.env.TLS_PORT !== "") {
  const certFile = process.env.TLS_CERT;
  const keyFile = process.env.TLS_KEY;
  if (!certFile || !keyFile) {
    console.error("TLS_PORT needs TLS_CERT and TLS_KEY");
    process.exit(2);
  }
  // HTTP/2 only, negotiated with ALPN: a client that does not offer "h2"
  // fails the handshake.
  const tls = http2.createSecureServer(
    {
      cert: fs.readFileSync(certFile),
      key: fs.readFileSync(keyFile),
      allowHTTP1: false,
      ALPNProtocols: ["h2"],
    },
    (req, res) => route(req, res),
  );
  tls.on("sessionError", (e) => console.error("http2 (tls) session error:", e.message));
  tls.on("tlsClientError", (e) => console.error("tls client error:", e.message));
  const tlsPort = await listen(tls, Number(process.env.TLS_PORT));
  process.stdout.write(`tls ${tlsPort}\n`);
}
process.stdout.write(`ready ${port}\n`);
