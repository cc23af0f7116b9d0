// The e2e deployment: the services of Restate's SDK conformance suite
// (restatedev/e2e sdk-tests, as restatedev/sdk-typescript's
// restate-e2e-services names them) behind the SDK's own endpoint handler,
// for test/t/100_conformance.pl.
//
//   PORT=9080 H1_PORT=9081 node test/services/e2e/server.ts
//
// PORT     h2c (HTTP/2 prior knowledge) server, BIDI_STREAM; default 9080, 0 = any
// H1_PORT  optional HTTP/1.1 server, REQUEST_RESPONSE, same services
// PID_FILE optional, receives the process id
//
// Both bind 127.0.0.1.  Stdout carries "h1 <port>" (with H1_PORT) and then
// "ready <port>" once listening; SDK logs go to stderr.

import fs from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import * as restate from "@restatedev/restate-sdk";
import { AwakeableHolder, Counter, Failing, ListObject, MapObject, Proxy, TestUtilsService } from "./objects.ts";
import {
  BlockAndWaitWorkflow,
  CancelTestBlockingService,
  CancelTestRunner,
  KillTestRunner,
  KillTestSingleton,
  NonDeterministic,
} from "./blocking.ts";
import { VirtualObjectCommandInterpreter } from "./interpreter.ts";

// SDK logs on stderr, so that stdout has only the port lines.
const LEVELS: Record<string, number> = { trace: 1, debug: 2, info: 3, warn: 4, error: 5 };
const minLevel = LEVELS[(process.env.RESTATE_LOGGING ?? "info").toLowerCase()] ?? 3;
const logger: restate.LoggerTransport = (params, message, ...rest) => {
  if (params.replaying || (LEVELS[params.level] ?? 3) < minLevel) return;
  const c = params.context;
  const where = c ? `[${c.invocationTarget}][${c.invocationId}]` : "";
  console.error(`[restate][${new Date().toISOString()}]${where} ${params.level.toUpperCase()}:`, message, ...rest);
};

// One handler for both servers: BIDI_STREAM for HTTP/2 requests,
// REQUEST_RESPONSE for HTTP/1.1 ones.
const handler = restate.createEndpointHandler({
  services: [
    AwakeableHolder,
    BlockAndWaitWorkflow,
    CancelTestBlockingService,
    CancelTestRunner,
    Counter,
    Failing,
    KillTestRunner,
    KillTestSingleton,
    ListObject,
    MapObject,
    NonDeterministic,
    Proxy,
    TestUtilsService,
    VirtualObjectCommandInterpreter,
  ],
  logger,
});

function listen(server: http.Server | http2.Http2Server, port: number): Promise<number> {
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

const h2 = http2.createServer((req, res) => handler(req as unknown as http.IncomingMessage, res as unknown as http.ServerResponse));
h2.on("sessionError", (e) => console.error("http2 session error:", e.message));
const port = await listen(h2, Number(process.env.PORT ?? 9080));

if (process.env.H1_PORT !== undefined && process.env.H1_PORT !== "") {
  const h1 = http.createServer((req, res) => handler(req, res));
  h1.on("clientError", (e, socket) => socket.destroy(e));
  process.stdout.write(`h1 ${await listen(h1, Number(process.env.H1_PORT))}\n`);
}
process.stdout.write(`ready ${port}\n`);
