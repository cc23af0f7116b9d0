// Preloaded into the test service by bench/throughput (node --import):
// counts the HTTP requests that reach the service's invoke endpoint
// (POST .../invoke/<Service>/<handler>), i.e. the invocation attempts that
// durable's dispatchers made, without changing test/services.
//
// The count is written to $BENCH_REQUEST_COUNT_FILE every 50 ms when it has
// changed, and once more at exit.  Reading it is cheaper and less intrusive
// than logging every request.

import fs from "node:fs";
import http from "node:http";
import http2 from "node:http2";

const file = process.env.BENCH_REQUEST_COUNT_FILE;
let count = 0;
let written = -1;

function flush() {
  if (!file || written === count) return;
  fs.writeFileSync(file + ".tmp", `${count}\n`);
  fs.renameSync(file + ".tmp", file);
  written = count;
}

function counting(create) {
  return (...args) => {
    const server = create(...args);
    server.on("request", (req) => {
      if (typeof req.url === "string" && req.url.includes("/invoke/")) count++;
    });
    return server;
  };
}

// server.ts uses the default imports (the modules' export objects), so
// replacing the properties here is what it will call.
http.createServer = counting(http.createServer);
http2.createServer = counting(http2.createServer);

setInterval(flush, 50).unref();
process.on("exit", flush);
flush();
