// The bench/compare workloads as Restate services (TypeScript SDK), served
// over h2c.  The same process serves durable and restate-server: both speak
// Restate's service protocol to it.
//
//   PORT=0 node restate.ts      prints "ready <port>" once listening
//   H1_PORT=0                   also an HTTP/1.1 server (request-response
//                               mode); prints "h1 <port>" before "ready"
//
// BenchGreeter/greet(name)   trivial handler
// BenchSteps/run()           10 ctx.run steps
// BenchCounter/<key>/add(n)  virtual object: count += n, returns the count

import http from "node:http";
import http2 from "node:http2";
import * as restate from "@restatedev/restate-sdk";
import { addTo, greet, step, stepsResult, STEPS } from "./work.ts";

const BenchGreeter = restate.service({
  name: "BenchGreeter",
  handlers: {
    greet: async (_ctx: restate.Context, name: string) => greet(name),
  },
});

const BenchSteps = restate.service({
  name: "BenchSteps",
  handlers: {
    run: async (ctx: restate.Context) => {
      let acc = 0;
      for (let i = 1; i <= STEPS; i++) {
        const r = await ctx.run(`step-${i}`, async () => step(i));
        acc += r.v;
      }
      return stepsResult(acc);
    },
  },
});

const BenchCounter = restate.object({
  name: "BenchCounter",
  handlers: {
    add: async (ctx: restate.ObjectContext, n: number) => {
      const count = addTo((await ctx.get<number>("count")) ?? 0, n ?? 1);
      ctx.set("count", count);
      return count;
    },
  },
});

const handler = restate.createEndpointHandler({ services: [BenchGreeter, BenchSteps, BenchCounter] });
const portOf = (srv: { address(): unknown }) => {
  const addr = srv.address() as { port?: number } | null;
  return addr?.port ?? "?";
};

function listenH2() {
  const server = http2.createServer(handler);
  server.listen(Number(process.env.PORT ?? 9080), "127.0.0.1", () => console.log(`ready ${portOf(server)}`));
}

if (process.env.H1_PORT !== undefined) {
  const h1 = http.createServer(handler as unknown as http.RequestListener);
  h1.keepAliveTimeout = 60_000;
  h1.listen(Number(process.env.H1_PORT), "127.0.0.1", () => {
    console.log(`h1 ${portOf(h1)}`);
    listenH2();
  });
} else {
  listenH2();
}
