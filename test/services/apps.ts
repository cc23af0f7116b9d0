// Test services for Restate's programming model running on durable:
// service-to-service calls (a saga with compensations, a chain, a fan-out),
// one-way and delayed sends, a virtual object fed in send order, an order
// approved through an awakeable, a workflow and its durable promise, many
// concurrent sleeps, and call trees for the crash tests.  Served under the
// path prefix /apps/ (see server.ts); contracts in README.md
// ("Applications").  Used by test/t/092_rpc.pl to 095_crash_calls.pl.
//
// Side effects are logged from inside ctx.run steps (effects.ts), so a line
// appears once per real execution of the step, never on a replay.

import * as restate from "@restatedev/restate-sdk";
import { recordExecution } from "./effects.ts";

const inv = (ctx: restate.Context) => String(ctx.request().id);
const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------- saga

// One kind of reservation per virtual object, keyed by trip: reserve(), and
// cancel() as its compensation.  reserve({"fail": msg}) refuses with a
// TerminalError(msg) and changes nothing.
function reservation(name: string) {
  return restate.object({
    name,
    handlers: {
      reserve: async (ctx: restate.ObjectContext, req: { fail?: string } | null) => {
        if (req?.fail) throw new restate.TerminalError(req.fail);
        const id = inv(ctx);
        const ref = await ctx.run("reserve", () => {
          recordExecution({ svc: name, h: "reserve", inv: id, key: ctx.key, step: 1 });
          return `${name}-${ctx.key}`;
        });
        ctx.set("status", "reserved");
        return ref;
      },
      cancel: async (ctx: restate.ObjectContext, ref: string) => {
        const id = inv(ctx);
        await ctx.run("cancel", () => {
          recordExecution({ svc: name, h: "cancel", inv: id, key: ctx.key, step: 1, ref });
        });
        ctx.set("status", "cancelled");
        return `cancelled ${ref}`;
      },
    },
  });
}

export const Flights = reservation("Flights");
export const Hotels = reservation("Hotels");
export const Cars = reservation("Cars");
export const Payments = reservation("Payments");

const TRIP_STEPS = [Flights, Hotels, Cars, Payments];

// Books a trip: reserves a flight, a hotel, a car and the payment, in that
// order, each a call to the object of that name keyed by the trip.  When a
// step fails terminally ({"failAt": "<step name>"} makes it refuse), the
// compensations of the steps done so far run in reverse order, then the
// saga fails with "trip <t> failed: <reason>; compensated <refs>".
export const TripSaga = restate.service({
  name: "TripSaga",
  handlers: {
    book: async (ctx: restate.Context, req: { trip: string; failAt?: string }) => {
      const compensations: { ref: string; undo: () => restate.RestatePromise<string> }[] = [];
      try {
        for (const step of TRIP_STEPS) {
          const fail = req.failAt === step.name ? `no ${step.name} available for ${req.trip}` : undefined;
          const ref: string = await ctx.objectClient(step, req.trip).reserve({ fail });
          compensations.push({ ref, undo: () => ctx.objectClient(step, req.trip).cancel(ref) });
        }
        return { trip: req.trip, booked: compensations.map((c) => c.ref) };
      } catch (e) {
        if (!(e instanceof restate.TerminalError)) throw e;
        const undone: string[] = [];
        for (const c of compensations.reverse()) {
          await c.undo();
          undone.push(c.ref);
        }
        throw new restate.TerminalError(`trip ${req.trip} failed: ${e.message}; compensated ${undone.join(",")}`);
      }
    },
  },
});

// ---------------------------------------------------------------- chain

// ChainA/start(v) calls ChainB/middle(v), which calls ChainC/leaf(v); each
// appends its letter: the result is "<v>:C:B:A".
export const ChainC = restate.service({
  name: "ChainC",
  handlers: {
    leaf: async (_ctx: restate.Context, value: string) => `${value}:C`,
  },
});

export const ChainB = restate.service({
  name: "ChainB",
  handlers: {
    middle: async (ctx: restate.Context, value: string) => `${await ctx.serviceClient(ChainC).leaf(value)}:B`,
  },
});

export const ChainA = restate.service({
  name: "ChainA",
  handlers: {
    start: async (ctx: restate.Context, value: string) => `${await ctx.serviceClient(ChainB).middle(value)}:A`,
  },
});

// ---------------------------------------------------------------- fan-out

// FanOut/sum(n) calls FanOut/square(i) for i = 1..n, all at once, joins
// them with RestatePromise.all and returns the sum of the squares.
export const FanOut = restate.service({
  name: "FanOut",
  handlers: {
    sum: async (ctx: restate.Context, n: number) => {
      const calls: restate.RestatePromise<number>[] = [];
      for (let i = 1; i <= n; i++) calls.push(ctx.serviceClient(FanOut).square(i));
      const squares = await restate.RestatePromise.all(calls);
      return squares.reduce((a, b) => a + b, 0);
    },
    square: async (_ctx: restate.Context, i: number) => i * i,
  },
});

// ---------------------------------------------------------------- sends

// Reminders/schedule({tag, delayMs}) logs (in a ctx.run step) and then sends
// Reminders/remind(tag) one way, delayed by delayMs (none for 0), and
// returns {"child": <the sent invocation's id>}.  remind logs each
// execution and returns "reminded <tag>".
export const Reminders = restate.service({
  name: "Reminders",
  handlers: {
    schedule: async (ctx: restate.Context, req: { tag: string; delayMs?: number }) => {
      const id = inv(ctx);
      await ctx.run("schedule", () => {
        recordExecution({ svc: "Reminders", h: "schedule", inv: id, step: 1, tag: req.tag });
      });
      const client = ctx.serviceSendClient(Reminders);
      const handle = req.delayMs
        ? client.remind(req.tag, restate.rpc.sendOpts({ delay: req.delayMs }))
        : client.remind(req.tag);
      return { child: await handle.invocationId };
    },
    remind: async (ctx: restate.Context, tag: string) => {
      recordExecution({ svc: "Reminders", h: "remind", inv: inv(ctx), tag });
      return `reminded ${tag}`;
    },
  },
});

// ---------------------------------------------------------------- ordering

// Tally/<key>/add({n, seq}) adds n (default 1) to state "total" and appends
// seq to state "seqs", the order in which the key's invocations ran.
export const Tally = restate.object({
  name: "Tally",
  handlers: {
    add: async (ctx: restate.ObjectContext, req: { n?: number; seq?: number } | null) => {
      const total = ((await ctx.get<number>("total")) ?? 0) + (req?.n ?? 1);
      const seqs = (await ctx.get<number[]>("seqs")) ?? [];
      seqs.push(req?.seq ?? -1);
      ctx.set("total", total);
      ctx.set("seqs", seqs);
      return total;
    },
    get: restate.handlers.object.shared(async (ctx: restate.ObjectSharedContext) => ({
      total: (await ctx.get<number>("total")) ?? 0,
      seqs: (await ctx.get<number[]>("seqs")) ?? [],
    })),
  },
});

// ---------------------------------------------------------------- approvals

type Decision = { approved: boolean; by?: string };

// Order/<id>/checkout({item}) waits for an approval: it creates an
// awakeable, keeps its id in state "approval" and as the result of the step
// "approval-awakeable" (the step logs it), sets state "status" to
// "awaiting-approval", and waits.  Resolved with {"approved", "by"}, it sets
// "status" to "approved" or "declined" and returns {order, item, decision};
// rejected, it sets "rejected" and returns {order, item, rejected: reason}.
// Order/<id>/status() (shared) returns state "status".
export const Order = restate.object({
  name: "Order",
  handlers: {
    checkout: async (ctx: restate.ObjectContext, req: { item: string } | null) => {
      const id = inv(ctx);
      const awk = ctx.awakeable<Decision>();
      await ctx.run("approval-awakeable", () => {
        recordExecution({ svc: "Order", h: "checkout", inv: id, key: ctx.key, step: 1, awakeable: awk.id });
        return awk.id;
      });
      ctx.set("approval", awk.id);
      ctx.set("status", "awaiting-approval");
      const item = req?.item ?? null;
      try {
        const decision = await awk.promise;
        ctx.set("status", decision.approved ? "approved" : "declined");
        return { order: ctx.key, item, decision };
      } catch (e) {
        if (!(e instanceof restate.TerminalError)) throw e;
        ctx.set("status", "rejected");
        return { order: ctx.key, item, rejected: e.message };
      }
    },
    status: restate.handlers.object.shared(async (ctx: restate.ObjectSharedContext) => {
      return (await ctx.get<string>("status")) ?? null;
    }),
  },
});

// ---------------------------------------------------------------- workflow

// Signup/<key>/run({email}): logs a welcome mail (a ctx.run step), sets
// state "stage" to "awaiting-confirmation", waits on the durable promise
// "email-confirmed", sets "stage" to "confirmed" and returns {email,
// confirmedWith: <the promise's value>}; a rejected promise fails it (500,
// the reason).  Shared handlers: status() returns {stage, confirmation:
// peek of the promise, or null}; awaitConfirmation() waits on the promise
// and returns its value; confirm(code) resolves it from a handler.
export const Signup = restate.workflow({
  name: "Signup",
  handlers: {
    run: async (ctx: restate.WorkflowContext, req: { email: string }) => {
      const id = inv(ctx);
      await ctx.run("welcome-mail", () => {
        recordExecution({ svc: "Signup", h: "run", inv: id, key: ctx.key, step: 1, email: req.email });
      });
      ctx.set("stage", "awaiting-confirmation");
      const code = await ctx.promise<string>("email-confirmed");
      ctx.set("stage", "confirmed");
      return { email: req.email, confirmedWith: code };
    },
    status: async (ctx: restate.WorkflowSharedContext) => ({
      stage: (await ctx.get<string>("stage")) ?? null,
      confirmation: (await ctx.promise<string>("email-confirmed").peek()) ?? null,
    }),
    awaitConfirmation: async (ctx: restate.WorkflowSharedContext) => {
      return await ctx.promise<string>("email-confirmed").get();
    },
    confirm: async (ctx: restate.WorkflowSharedContext, code: string) => {
      await ctx.promise<string>("email-confirmed").resolve(code);
      return "confirmed";
    },
  },
});

// Ephemeral/<key>/run(n): sets state "n" and returns n * 10; its result,
// state and promises are kept 1 s after it completes (workflowRetention),
// then the key may run again.  Shared handler get() returns state "n".
export const Ephemeral = restate.workflow({
  name: "Ephemeral",
  handlers: {
    run: async (ctx: restate.WorkflowContext, n: number) => {
      ctx.set("n", n);
      return n * 10;
    },
    get: async (ctx: restate.WorkflowSharedContext) => (await ctx.get<number>("n")) ?? null,
  },
  options: { workflowRetention: 1000 },
});

// ---------------------------------------------------------------- sleeps

// Sleeper/nap({ms, n}): ctx.sleep(ms), returns n.
export const Sleeper = restate.service({
  name: "Sleeper",
  handlers: {
    nap: async (ctx: restate.Context, req: { ms: number; n: number }) => {
      await ctx.sleep(req.ms);
      return req.n;
    },
  },
});

// ---------------------------------------------------------------- call trees

// Worker/<key>/work({i, ms}): a ctx.run step "work" that takes ms (a plain
// timer) and logs, returning i*i + 1; counts its runs in state "runs".
// Worker/<key>/ping() (exclusive) returns state "runs": a call that can only
// complete when the key is not locked.
export const Worker = restate.object({
  name: "Worker",
  handlers: {
    work: async (ctx: restate.ObjectContext, req: { i: number; ms?: number }) => {
      const id = inv(ctx);
      const r = await ctx.run("work", async () => {
        if (req.ms) await pause(req.ms);
        recordExecution({ svc: "Worker", h: "work", inv: id, key: ctx.key, step: 1 });
        return req.i * req.i + 1;
      });
      ctx.set("runs", ((await ctx.get<number>("runs")) ?? 0) + 1);
      return r;
    },
    ping: async (ctx: restate.ObjectContext) => (await ctx.get<number>("runs")) ?? 0,
  },
});

// Gate/<key>/wait(): an awakeable whose id is the result of the step
// "awakeable-id" (logged); returns the value it is resolved with and keeps
// it in state "opened".  Gate/<key>/ping() (exclusive) returns "opened".
export const Gate = restate.object({
  name: "Gate",
  handlers: {
    wait: async (ctx: restate.ObjectContext) => {
      const id = inv(ctx);
      const awk = ctx.awakeable<unknown>();
      await ctx.run("awakeable-id", () => {
        recordExecution({ svc: "Gate", h: "wait", inv: id, key: ctx.key, step: 1, awakeable: awk.id });
        return awk.id;
      });
      const value = await awk.promise;
      ctx.set("opened", value);
      return value;
    },
    ping: async (ctx: restate.ObjectContext) => (await ctx.get<unknown>("opened")) ?? null,
  },
});

// Tree: the callers of the crash tests.
//   root({name, branches, leaves, ms}) calls branch({name: "<name>-<b>",
//     leaves, ms}) for b = 0..branches-1, all at once, and returns {name,
//     sum} (the sum of the branches' sums); then logs step "done".
//   branch({name, leaves, ms}) calls Worker/<name>-<l>/work({i: l, ms:
//     ms * (l + 1)}) for l = 0..leaves-1, all at once (so they finish one
//     after the other), and returns their sum.
//   gate(key) calls Gate/<key>/wait() and returns {key, value}.
//   signup({key, email}) calls the workflow Signup/<key>/run({email}) and
//     returns {key, result}.
//   attach(id) attaches to invocation id and returns {attached: <its
//     result>}.
//   headers(h) calls Probe/headers with the headers h (an object) and
//     returns the headers the callee saw.
export const Tree = restate.service({
  name: "Tree",
  handlers: {
    root: async (ctx: restate.Context, req: { name: string; branches: number; leaves: number; ms?: number }) => {
      const calls: restate.RestatePromise<number>[] = [];
      for (let b = 0; b < req.branches; b++)
        calls.push(ctx.serviceClient(Tree).branch({ name: `${req.name}-${b}`, leaves: req.leaves, ms: req.ms }));
      const sums = await restate.RestatePromise.all(calls);
      const sum = sums.reduce((a, b) => a + b, 0);
      const id = inv(ctx);
      await ctx.run("done", () => {
        recordExecution({ svc: "Tree", h: "root", inv: id, step: 1, name: req.name, sum });
      });
      return { name: req.name, sum };
    },
    branch: async (ctx: restate.Context, req: { name: string; leaves: number; ms?: number }) => {
      const calls: restate.RestatePromise<number>[] = [];
      for (let l = 0; l < req.leaves; l++)
        calls.push(ctx.objectClient(Worker, `${req.name}-${l}`).work({ i: l, ms: req.ms ? req.ms * (l + 1) : 0 }));
      const results = await restate.RestatePromise.all(calls);
      return results.reduce((a, b) => a + b, 0);
    },
    gate: async (ctx: restate.Context, key: string) => ({ key, value: await ctx.objectClient(Gate, key).wait() }),
    signup: async (ctx: restate.Context, req: { key: string; email: string }) => ({
      key: req.key,
      result: await ctx.workflowClient(Signup, req.key).run({ email: req.email }),
    }),
    attach: async (ctx: restate.Context, id: string) => ({
      attached: await ctx.invocation(restate.InvocationIdParser.fromString(id)).attach(),
    }),
    headers: async (ctx: restate.Context, headers: Record<string, string>) =>
      await ctx.genericCall({
        service: "Probe",
        method: "headers",
        parameter: null,
        headers,
        inputSerde: restate.serde.json,
        outputSerde: restate.serde.json,
      }),
  },
});

export const appServices = [
  Flights,
  Hotels,
  Cars,
  Payments,
  TripSaga,
  ChainA,
  ChainB,
  ChainC,
  FanOut,
  Reminders,
  Tally,
  Order,
  Signup,
  Ephemeral,
  Sleeper,
  Worker,
  Gate,
  Tree,
];
