// Two Restate services for the durable README demo.  Plain Restate SDK code:
// nothing here knows about PostgreSQL.
//
//   PORT=9080 node service.ts

import http2 from "node:http2";
import * as restate from "@restatedev/restate-sdk";

const greeter = restate.service({
  name: "Greeter",
  handlers: {
    greet: async (ctx: restate.Context, name: string) => `Hello, ${name}!`,
  },
});

type Order = { id: string; item: string; quantity: number; amountCents: number };

// Stand-in for a call to some other system.
const slowCall = () => new Promise((resolve) => setTimeout(resolve, 100));

const orders = restate.service({
  name: "Orders",
  handlers: {
    // Each ctx.run step is journaled once it completes: if the process dies
    // half-way, the retry replays finished steps from the journal instead of
    // running them again (no double charge, no second parcel).
    process: async (ctx: restate.Context, order: Order) => {
      const reservation = await ctx.run("reserve-stock", async () => {
        console.log(`[${order.id}] reserving ${order.quantity} x ${order.item}`);
        await slowCall();
        return { reservationId: `rsv-${order.id}` };
      });

      const payment = await ctx.run("charge-card", async () => {
        console.log(`[${order.id}] charging ${order.amountCents} cents`);
        await slowCall();
        return { paymentId: `pay-${order.id}`, amountCents: order.amountCents };
      });

      const shipment = await ctx.run("ship", async () => {
        console.log(`[${order.id}] handing the parcel to the carrier`);
        await slowCall();
        return { trackingNumber: `TRK-${order.id.toUpperCase()}` };
      });

      return { orderId: order.id, status: "shipped", ...reservation, ...payment, ...shipment };
    },
  },
});

const port = Number(process.env.PORT ?? 9080);
http2
  .createServer(restate.createEndpointHandler({ services: [greeter, orders] }))
  .listen(port, "127.0.0.1", () => console.log(`ready ${port}`));
