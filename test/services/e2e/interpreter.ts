// VirtualObjectCommandInterpreter of Restate's e2e suite (Sleep, Combinators,
// Signals scenarios), written from its description: interpretCommands runs
// a list of commands over awaitables (awakeables, sleeps, ctx.run, named
// signals) and records each command's result in state "results".

import * as restate from "@restatedev/restate-sdk";
import { setTimeout as delay } from "node:timers/promises";

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

type ObjCtx = restate.ObjectContext;
type SharedCtx = restate.ObjectSharedContext;

// An awakeable whose id is kept in state "awk-<key>" for the shared handlers.
function newAwakeable(ctx: ObjCtx, key: string): restate.RestatePromise<string> {
  const awk = ctx.awakeable<string>();
  ctx.set(`awk-${key}`, awk.id);
  return awk.promise;
}

function toPromise(ctx: ObjCtx, a: Awaitable): restate.RestatePromise<string> {
  switch (a.type) {
    case "createAwakeable":
      return newAwakeable(ctx, a.awakeableKey);
    case "sleep":
      return ctx.sleep(a.timeoutMillis).map(() => "sleep");
    case "runReturns":
      // real asynchronous work inside the step
      return ctx.run<string>(async () => {
        await delay(1);
        return a.value;
      });
    case "runThrowTerminalException":
      return ctx.run<string>(async () => {
        throw new restate.TerminalError(a.reason);
      });
    case "createSignal":
      return ctx.signal<string>(a.signalName);
  }
}

const message = (e: unknown) => (e instanceof Error ? e.message : String(e));

async function runCommand(ctx: ObjCtx, c: Command): Promise<string> {
  switch (c.type) {
    case "awaitOne":
      return await toPromise(ctx, c.command);
    case "awaitAny":
    case "awaitFirstCompleted":
      return await restate.RestatePromise.race(c.commands.map((a) => toPromise(ctx, a)));
    case "awaitAnySuccessful":
    case "awaitFirstSucceededOrAllFailed":
      return await restate.RestatePromise.any(c.commands.map((a) => toPromise(ctx, a)));
    case "awaitAllSucceededOrFirstFailed":
      return (await restate.RestatePromise.all(c.commands.map((a) => toPromise(ctx, a)))).join("|");
    case "awaitAllCompleted": {
      const outcomes = await restate.RestatePromise.allSettled(c.commands.map((a) => toPromise(ctx, a)));
      return outcomes.map((o) => (o.status === "fulfilled" ? `ok:${o.value}` : `err:${message(o.reason)}`)).join("|");
    }
    case "awaitAwakeableOrTimeout":
      try {
        return await newAwakeable(ctx, c.awakeableKey).orTimeout(c.timeoutMillis);
      } catch (e) {
        if (e instanceof restate.TimeoutError) throw new restate.TerminalError("await-timeout");
        throw e;
      }
    case "resolveAwakeable":
      ctx.resolveAwakeable(await heldAwakeable(ctx, c.awakeableKey), c.value);
      return "";
    case "rejectAwakeable":
      ctx.rejectAwakeable(await heldAwakeable(ctx, c.awakeableKey), c.reason);
      return "";
    case "getEnvVariable":
      return await ctx.run(async () => process.env[c.envName] ?? "");
  }
}

async function heldAwakeable(ctx: SharedCtx, key: string): Promise<string> {
  const id = await ctx.get<string>(`awk-${key}`);
  if (id === null || id === undefined) throw new restate.TerminalError("awakeable is not registered yet");
  return id;
}

export const VirtualObjectCommandInterpreter = restate.object({
  name: "VirtualObjectCommandInterpreter",
  handlers: {
    // Runs the commands in order; returns the last result ("" for none).
    interpretCommands: async (ctx: ObjCtx, req: { commands: Command[] }) => {
      let last = "";
      for (const c of req.commands) {
        last = await runCommand(ctx, c);
        const results = (await ctx.get<string[]>("results")) ?? [];
        ctx.set("results", [...results, last]);
      }
      return last;
    },
    resolveAwakeable: restate.handlers.object.shared(
      async (ctx: SharedCtx, r: { awakeableKey: string; value: string }) => {
        ctx.resolveAwakeable(await heldAwakeable(ctx, r.awakeableKey), r.value);
      },
    ),
    rejectAwakeable: restate.handlers.object.shared(
      async (ctx: SharedCtx, r: { awakeableKey: string; reason: string }) => {
        ctx.rejectAwakeable(await heldAwakeable(ctx, r.awakeableKey), r.reason);
      },
    ),
    hasAwakeable: restate.handlers.object.shared(async (ctx: SharedCtx, key: string) => {
      const id = await ctx.get<string>(`awk-${key}`);
      return id !== null && id !== undefined;
    }),
    getResults: restate.handlers.object.shared(
      async (ctx: SharedCtx) => (await ctx.get<string[]>("results")) ?? [],
    ),
  },
});
