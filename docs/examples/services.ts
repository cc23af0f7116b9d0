// The services behind the examples of docs/rpc.md,
// docs/awakeables-and-signals.md, docs/workflows.md and
// docs/cancel-and-kill.md: a small shop (Checkout calling Inventory,
// Payments and Emails), approvals (Purchase, Review), a sign-up workflow
// (Signup) and a trip booking with compensations (Trips, Flights, Hotels).
//
// Run it with Node >= 22 where @restatedev/restate-sdk 1.17 is installed,
// e.g. next to the sample service (its package.json brings the SDK):
//   cp docs/examples/services.ts examples/greeter/
//   cd examples/greeter && npm install && node services.ts
// then, in SQL: SELECT durable.register_deployment('http://127.0.0.1:9791');
import http2 from "node:http2";
import * as restate from "@restatedev/restate-sdk";
import { TerminalError, rpc } from "@restatedev/restate-sdk";

const inventory = restate.service({
  name: "Inventory",
  handlers: {
    reserve: async (ctx: restate.Context, item: string) => `reserved ${item}`,
    release: async (ctx: restate.Context, item: string) => `released ${item}`,
  },
});

const payments = restate.service({
  name: "Payments",
  handlers: {
    charge: async (ctx: restate.Context, req: { order: string; amount: number }) => {
      if (req.amount > 1000) throw new TerminalError("card declined", { errorCode: 402 });
      return `ch_${req.order}`;
    },
  },
});

const emails = restate.service({
  name: "Emails",
  handlers: {
    confirm: async (ctx: restate.Context, order: string) => `confirmation sent for ${order}`,
    remind: async (ctx: restate.Context, order: string) => `reminder sent for ${order}`,
  },
});

const checkout = restate.service({
  name: "Checkout",
  handlers: {
    run: async (ctx: restate.Context, order: { id: string; item: string; amount: number }) => {
      const reservation = await ctx.serviceClient(inventory).reserve(order.item);
      let charge: string;
      try {
        charge = await ctx
          .serviceClient(payments)
          .charge({ order: order.id, amount: order.amount }, rpc.opts({ idempotencyKey: order.id }));
      } catch (e) {
        if (!(e instanceof TerminalError)) throw e;
        await ctx.serviceClient(inventory).release(order.item);
        return { status: "declined", reason: e.message, code: e.code };
      }
      ctx.serviceSendClient(emails).confirm(order.id);
      ctx.serviceSendClient(emails).remind(order.id, rpc.sendOpts({ delay: { hours: 24 } }));
      return { status: "paid", reservation, charge };
    },
    // Calls service/handler by name; a failure is returned, not thrown.
    callByName: async (ctx: restate.Context, t: { service: string; handler: string; key?: string }) => {
      try {
        return await ctx.genericCall({
          service: t.service, method: t.handler, key: t.key, parameter: "x",
          inputSerde: restate.serde.json, outputSerde: restate.serde.json,
        });
      } catch (e) {
        if (e instanceof TerminalError) return { code: e.code, message: e.message };
        throw e;
      }
    },
    // Waits for the result of any invocation, given its id.
    attach: async (ctx: restate.Context, id: string) =>
      await ctx.invocation(restate.InvocationIdParser.fromString(id)).attach(),
  },
});

const headers = restate.service({
  name: "Headers",
  handlers: {
    show: async (ctx: restate.Context) => Object.fromEntries(ctx.request().headers),
  },
});

// Approvals: the awakeable's id is kept in the object's state, where SQL
// reads it (durable.state); a named signal needs only the invocation id.
const purchase = restate.object({
  name: "Purchase",
  handlers: {
    request: async (ctx: restate.ObjectContext, amount: number) => {
      const { id, promise } = ctx.awakeable<{ approved: boolean; by: string }>();
      ctx.set("awakeable", id);
      try {
        const d = await promise;
        return d.approved ? `${amount} approved by ${d.by}` : `${amount} refused by ${d.by}`;
      } catch (e) {
        if (e instanceof TerminalError) return `${amount} rejected: ${e.message}`;
        throw e;
      } finally {
        ctx.clear("awakeable");
      }
    },
  },
});

const review = restate.service({
  name: "Review",
  handlers: {
    document: async (ctx: restate.Context, doc: string) => {
      const verdict = await ctx.signal<string>("verdict");
      return `${doc}: ${verdict}`;
    },
  },
});

// A sign-up workflow: run once per e-mail address, waits for the link in
// the e-mail to be clicked (the promise "email-link").
const signup = restate.workflow({
  name: "Signup",
  handlers: {
    run: async (ctx: restate.WorkflowContext, name: string) => {
      ctx.set("status", "waiting for the link");
      await ctx.run("send e-mail", () => console.log(`mail to ${ctx.key}`));
      const click = await ctx.promise<{ at: string }>("email-link");
      ctx.set("status", "verified");
      return `${name} <${ctx.key}> verified at ${click.at}`;
    },
    click: async (ctx: restate.WorkflowSharedContext, at: string) => {
      await ctx.promise<{ at: string }>("email-link").resolve({ at });
      return "thanks";
    },
    status: async (ctx: restate.WorkflowSharedContext) => ({
      status: await ctx.get<string>("status"),
      link: (await ctx.promise<{ at: string }>("email-link").peek()) ?? null,
    }),
  },
});

// Trip booking: a flight, then a hotel (slow); compensations on a
// terminal error, cancellation included.
const flights = restate.service({
  name: "Flights",
  handlers: {
    reserve: async (ctx: restate.Context, trip: string) => `flight for ${trip}`,
    cancel: async (ctx: restate.Context, trip: string) => `flight for ${trip} cancelled`,
  },
});

const hotels = restate.service({
  name: "Hotels",
  handlers: {
    reserve: async (ctx: restate.Context, trip: string) => {
      await ctx.sleep({ hours: 1 });
      return `hotel for ${trip}`;
    },
  },
});

const trips = restate.service({
  name: "Trips",
  handlers: {
    book: async (ctx: restate.Context, trip: string) => {
      const undo: (() => Promise<unknown>)[] = [];
      ctx.serviceSendClient(emails).remind(trip, rpc.sendOpts({ delay: { days: 1 } }));
      try {
        await ctx.serviceClient(flights).reserve(trip);
        undo.push(() => ctx.serviceClient(flights).cancel(trip));
        await ctx.serviceClient(hotels).reserve(trip);
        return "booked";
      } catch (e) {
        if (e instanceof TerminalError)
          for (const u of undo.reverse()) await u();
        throw e;
      }
    },
  },
});

http2.createServer(restate.createEndpointHandler({
  services: [inventory, payments, emails, checkout, headers, purchase, review, signup,
             flights, hotels, trips],
})).listen(9791, "127.0.0.1");
