// Test services for awakeables and signals: completing an invocation's
// wait from SQL (durable.resolve_awakeable, durable.signal, ...) and from
// other handlers.  See README.md ("Awakeables and signals").
//
// Approvals is durable's own; AwakeableHolder, TestUtilsService and
// VirtualObjectCommandInterpreter have the names and behaviour of the
// services of Restate's e2e suite (restatedev/sdk-typescript
// packages/tests/restate-e2e-services) that its Signals and awakeable
// scenarios use, written here from their description.

import * as restate from "@restatedev/restate-sdk";
import { recordExecution } from "./effects.ts";

const inv = (ctx: restate.Context) => String(ctx.request().id);

type AwaitOpts = { sleepMs?: number } | null | undefined;
type SignalOpts = { name?: string; sleepMs?: number } | string | null | undefined;

// Creates an awakeable and journals its id as the result of the step
// "awakeable-id" (the step also logs it), so that a test can read the id
// from durable.journal before completing it.
async function recordedAwakeable<T>(ctx: restate.Context, h: string, serde?: restate.Serde<T>) {
  const awk = serde ? ctx.awakeable<T>(serde) : ctx.awakeable<T>();
  const id = inv(ctx);
  await ctx.run("awakeable-id", () => {
    recordExecution({ svc: "Approvals", h, inv: id, step: 1, awakeable: awk.id });
    return awk.id;
  });
  return awk;
}

export const Approvals = restate.service({
  name: "Approvals",
  handlers: {
    // Waits on an awakeable and returns what it was resolved with; a
    // rejection propagates, so the invocation fails with the reason.  With
    // {"sleepMs": N} it sleeps N ms (ctx.sleep) between creating the
    // awakeable and awaiting it, for completions that arrive first.
    awaitAwakeable: async (ctx: restate.Context, opts: AwaitOpts) => {
      const awk = await recordedAwakeable<unknown>(ctx, "awaitAwakeable");
      if (opts?.sleepMs) await ctx.sleep(opts.sleepMs);
      return await awk.promise;
    },
    // The same, but the payload is taken as raw bytes: returns
    // {"hex": <the bytes in hex>, "length": n}.
    awaitAwakeableBytes: async (ctx: restate.Context) => {
      const awk = await recordedAwakeable<Uint8Array>(ctx, "awaitAwakeableBytes", restate.serde.binary);
      const bytes = await awk.promise;
      return { hex: Buffer.from(bytes).toString("hex"), length: bytes.length };
    },
    // Like awaitAwakeable, but catches a rejection and returns
    // {"rejected": <message>, "code": <code>} instead of failing.
    awaitAwakeableCatch: async (ctx: restate.Context) => {
      const awk = await recordedAwakeable<unknown>(ctx, "awaitAwakeableCatch");
      try {
        return { value: await awk.promise };
      } catch (e) {
        if (e instanceof restate.TerminalError) return { rejected: e.message, code: e.code };
        throw e;
      }
    },
    // Waits on the named signal (default "approved") and returns its
    // payload; input is the name or {"name", "sleepMs"} (sleep first).  A
    // rejection propagates.
    awaitSignal: async (ctx: restate.Context, opts: SignalOpts) => {
      const o = typeof opts === "string" ? { name: opts } : (opts ?? {});
      recordExecution({ svc: "Approvals", h: "awaitSignal", inv: inv(ctx), name: o.name ?? "approved" });
      if (o.sleepMs) await ctx.sleep(o.sleepMs);
      return await ctx.signal<unknown>(o.name ?? "approved");
    },
    // From a handler: CompleteAwakeable with a value, or with a failure.
    resolveAwakeable: async (ctx: restate.Context, req: { id: string; value?: unknown }) => {
      recordExecution({ svc: "Approvals", h: "resolveAwakeable", inv: inv(ctx), awakeable: req.id });
      ctx.resolveAwakeable(req.id, req.value);
      return "resolved";
    },
    rejectAwakeable: async (ctx: restate.Context, req: { id: string; reason: string }) => {
      recordExecution({ svc: "Approvals", h: "rejectAwakeable", inv: inv(ctx), awakeable: req.id });
      ctx.rejectAwakeable(req.id, req.reason);
      return "rejected";
    },
    // From a handler: SendSignal (by name) to another invocation.
    signal: async (ctx: restate.Context, req: { invocationId: string; name?: string; value?: unknown }) => {
      recordExecution({ svc: "Approvals", h: "signal", inv: inv(ctx), target: req.invocationId });
      ctx
        .invocation(restate.InvocationIdParser.fromString(req.invocationId))
        .signal(req.name ?? "approved")
        .resolve(req.value);
      return "signalled";
    },
    rejectSignal: async (ctx: restate.Context, req: { invocationId: string; name?: string; reason: string }) => {
      recordExecution({ svc: "Approvals", h: "rejectSignal", inv: inv(ctx), target: req.invocationId });
      ctx
        .invocation(restate.InvocationIdParser.fromString(req.invocationId))
        .signal(req.name ?? "approved")
        .reject(req.reason);
      return "rejected";
    },
  },
});

// ---------------------------------------------------------------- e2e suite

// Holds an awakeable id that someone else created: hold(id) keeps it in
// state "id", unlock(payload) resolves it and forgets it.
export const AwakeableHolder = restate.object({
  name: "AwakeableHolder",
  handlers: {
    hold: async (ctx: restate.ObjectContext, id: string) => {
      ctx.set("id", id);
    },
    hasAwakeable: async (ctx: restate.ObjectContext) => {
      const id = await ctx.get<string>("id");
      return id !== null && id !== undefined;
    },
    unlock: async (ctx: restate.ObjectContext, payload: string) => {
      const id = await ctx.get<string>("id");
      // As in the e2e suite: a retryable error, unlock before hold retries.
      if (id === null || id === undefined) throw new Error("No awakeable registered");
      ctx.resolveAwakeable(id, payload);
      ctx.clear("id");
    },
  },
});

export const TestUtilsService = restate.service({
  name: "TestUtilsService",
  handlers: {
    echo: async (_ctx: restate.Context, input: string) => input,
    uppercaseEcho: async (_ctx: restate.Context, input: string) => input.toUpperCase(),
    echoHeaders: async (ctx: restate.Context) => Object.fromEntries(ctx.request().headers),
    rawEcho: restate.handlers.handler(
      { input: restate.serde.binary, output: restate.serde.binary },
      async (_ctx: restate.Context, input: Uint8Array) => input,
    ),
    // Runs `increments` ctx.run steps and returns how many of them really
    // executed in this attempt (replayed ones do not).
    countExecutedSideEffects: async (ctx: restate.Context, increments: number) => {
      let executed = 0;
      for (let i = 0; i < increments; i++) {
        await ctx.run("count", () => {
          executed++;
        });
      }
      return executed;
    },
    cancelInvocation: async (ctx: restate.Context, invocationId: string) => {
      ctx.invocation(restate.InvocationIdParser.fromString(invocationId)).cancel();
    },
    resolveSignal: async (ctx: restate.Context, req: { invocationId: string; signalName: string; value: string }) => {
      ctx.invocation(restate.InvocationIdParser.fromString(req.invocationId)).signal(req.signalName).resolve(req.value);
    },
    rejectSignal: async (ctx: restate.Context, req: { invocationId: string; signalName: string; reason: string }) => {
      ctx.invocation(restate.InvocationIdParser.fromString(req.invocationId)).signal(req.signalName).reject(req.reason);
    },
  },
});

// A small interpreter of awaitable commands, keyed by test id: the e2e
// suite's Signals and Combinators scenarios drive it.
type Awaitable =
  | { type: "createAwakeable"; awakeableKey: string }
  | { type: "sleep"; timeoutMillis: number }
  | { type: "runReturns"; value: string }
  | { type: "runThrowTerminalException"; reason: string }
  | { type: "createSignal"; signalName: string };

type Command =
  | { type: "awaitOne"; command: Awaitable }
  | { type: "awaitAny" | "awaitFirstCompleted"; commands: Awaitable[] }
  | { type: "awaitAnySuccessful" | "awaitFirstSucceededOrAllFailed"; commands: Awaitable[] }
  | { type: "awaitAllSucceededOrFirstFailed"; commands: Awaitable[] }
  | { type: "awaitAllCompleted"; commands: Awaitable[] }
  | { type: "awaitAwakeableOrTimeout"; awakeableKey: string; timeoutMillis: number }
  | { type: "resolveAwakeable"; awakeableKey: string; value: string }
  | { type: "rejectAwakeable"; awakeableKey: string; reason: string }
  | { type: "getEnvVariable"; envName: string };

function awaitable(ctx: restate.ObjectContext, c: Awaitable): restate.RestatePromise<string> {
  switch (c.type) {
    case "createAwakeable": {
      const { id, promise } = ctx.awakeable<string>();
      ctx.set(`awk-${c.awakeableKey}`, id);
      return promise;
    }
    case "sleep":
      return ctx.sleep(c.timeoutMillis).map(() => "sleep");
    case "runReturns":
      return ctx.run<string>(async () => c.value);
    case "runThrowTerminalException":
      return ctx.run<string>(async () => {
        throw new restate.TerminalError(c.reason);
      });
    case "createSignal":
      return ctx.signal<string>(c.signalName);
  }
}

async function storedAwakeable(ctx: restate.ObjectSharedContext, key: string): Promise<string> {
  const id = await ctx.get<string>(`awk-${key}`);
  if (id === null || id === undefined) throw new restate.TerminalError("awakeable is not registered yet");
  return id;
}

export const VirtualObjectCommandInterpreter = restate.object({
  name: "VirtualObjectCommandInterpreter",
  handlers: {
    // Runs the commands in order, appends each one's result to state
    // "results" and returns the last one.
    interpretCommands: async (ctx: restate.ObjectContext, req: { commands: Command[] }) => {
      let last = "";
      for (const c of req.commands) {
        switch (c.type) {
          case "awaitOne":
            last = await awaitable(ctx, c.command);
            break;
          case "awaitAny":
          case "awaitFirstCompleted":
            last = await restate.RestatePromise.race(c.commands.map((a) => awaitable(ctx, a)));
            break;
          case "awaitAnySuccessful":
          case "awaitFirstSucceededOrAllFailed":
            last = await restate.RestatePromise.any(c.commands.map((a) => awaitable(ctx, a)));
            break;
          case "awaitAllSucceededOrFirstFailed":
            last = (await restate.RestatePromise.all(c.commands.map((a) => awaitable(ctx, a)))).join("|");
            break;
          case "awaitAllCompleted": {
            const settled = await restate.RestatePromise.allSettled(c.commands.map((a) => awaitable(ctx, a)));
            last = settled
              .map((s) => (s.status === "fulfilled" ? `ok:${s.value}` : `err:${(s.reason as Error).message}`))
              .join("|");
            break;
          }
          case "awaitAwakeableOrTimeout":
            try {
              last = await awaitable(ctx, { type: "createAwakeable", awakeableKey: c.awakeableKey }).orTimeout(
                c.timeoutMillis,
              );
            } catch (e) {
              if (e instanceof restate.TimeoutError) throw new restate.TerminalError("await-timeout");
              throw e;
            }
            break;
          case "resolveAwakeable":
            ctx.resolveAwakeable(await storedAwakeable(ctx, c.awakeableKey), c.value);
            last = "";
            break;
          case "rejectAwakeable":
            ctx.rejectAwakeable(await storedAwakeable(ctx, c.awakeableKey), c.reason);
            last = "";
            break;
          case "getEnvVariable":
            last = await ctx.run(() => process.env[c.envName] ?? "");
            break;
        }
        const results = (await ctx.get<string[]>("results")) ?? [];
        results.push(last);
        ctx.set("results", results);
      }
      return last;
    },
    resolveAwakeable: restate.handlers.object.shared(
      async (ctx: restate.ObjectSharedContext, req: { awakeableKey: string; value: string }) => {
        ctx.resolveAwakeable(await storedAwakeable(ctx, req.awakeableKey), req.value);
      },
    ),
    rejectAwakeable: restate.handlers.object.shared(
      async (ctx: restate.ObjectSharedContext, req: { awakeableKey: string; reason: string }) => {
        ctx.rejectAwakeable(await storedAwakeable(ctx, req.awakeableKey), req.reason);
      },
    ),
    hasAwakeable: restate.handlers.object.shared(async (ctx: restate.ObjectSharedContext, key: string) => {
      const id = await ctx.get<string>(`awk-${key}`);
      return id !== null && id !== undefined;
    }),
    getResults: restate.handlers.object.shared(async (ctx: restate.ObjectSharedContext) => {
      return (await ctx.get<string[]>("results")) ?? [];
    }),
  },
});
