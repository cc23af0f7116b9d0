// Call trees that block, for cancellation and kill (CancelTestRunner,
// CancelTestBlockingService, KillTestRunner, KillTestSingleton), a workflow
// waiting on a durable promise (BlockAndWaitWorkflow) and handlers whose
// replay diverges from their journal (NonDeterministic): the names, inputs
// and behaviour of Restate's e2e services, written from their description.

import * as restate from "@restatedev/restate-sdk";
import { AwakeableHolder, Counter } from "./objects.ts";

type ObjCtx = restate.ObjectContext;
type BlockingOperation = "CALL" | "SLEEP" | "AWAKEABLE";

const holder = (ctx: ObjCtx) => ctx.objectClient<typeof AwakeableHolder>({ name: "AwakeableHolder" }, ctx.key);

// ---------------------------------------------------------------- cancellation

export const CancelTestBlockingService = restate.object({
  name: "CancelTestBlockingService",
  handlers: {
    // Hands an awakeable to AwakeableHolder (same key) and waits for it;
    // then blocks for good: a call to itself (same key, so it can never
    // start), a very long sleep, or an awakeable nobody has.
    block: async (ctx: ObjCtx, op: BlockingOperation) => {
      const gate = ctx.awakeable<string>();
      await holder(ctx).hold(gate.id);
      await gate.promise;
      if (op === "CALL") {
        await ctx.objectClient(BlockingApi, ctx.key).block(op);
      } else if (op === "SLEEP") {
        await ctx.sleep(1_000_000_000);
      } else {
        await ctx.awakeable<string>().promise;
      }
    },
    isUnlocked: async () => {},
  },
});
const BlockingApi: typeof CancelTestBlockingService = { name: "CancelTestBlockingService" };

export const CancelTestRunner = restate.object({
  name: "CancelTestRunner",
  handlers: {
    // Calls block(op) on the blocking service of the same key; a 409
    // (cancelled) failure is caught and remembered in state "canceled".
    startTest: async (ctx: ObjCtx, op: BlockingOperation) => {
      try {
        await ctx.objectClient(BlockingApi, ctx.key).block(op);
      } catch (e) {
        if (!(e instanceof restate.TerminalError) || e.code !== 409) throw e;
        ctx.set("canceled", true);
      }
    },
    verifyTest: async (ctx: ObjCtx) => (await ctx.get<boolean>("canceled")) ?? false,
  },
});

// ---------------------------------------------------------------- kill

export const KillTestSingleton = restate.object({
  name: "KillTestSingleton",
  handlers: {
    // Sends an awakeable to AwakeableHolder (one-way), waits for it, then
    // calls itself on the same key: a call that can never start.
    recursiveCall: async (ctx: ObjCtx) => {
      const gate = ctx.awakeable<string>();
      ctx.objectSendClient<typeof AwakeableHolder>({ name: "AwakeableHolder" }, ctx.key).hold(gate.id);
      await gate.promise;
      await ctx.objectClient(SingletonApi, ctx.key).recursiveCall();
    },
    isUnlocked: async () => {},
  },
});
const SingletonApi: typeof KillTestSingleton = { name: "KillTestSingleton" };

export const KillTestRunner = restate.object({
  name: "KillTestRunner",
  handlers: {
    startCallTree: async (ctx: ObjCtx) => {
      await ctx.objectClient(SingletonApi, ctx.key).recursiveCall();
    },
  },
});

// ---------------------------------------------------------------- workflow

export const BlockAndWaitWorkflow = restate.workflow({
  name: "BlockAndWaitWorkflow",
  handlers: {
    // Stores its input in state "input", waits for promise "p" and returns
    // its value (checking that peek sees it too).
    run: async (ctx: restate.WorkflowContext, input: string) => {
      ctx.set("input", input);
      const value = await ctx.promise<string>("p");
      if ((await ctx.promise<string>("p").peek()) === undefined) {
        throw new restate.TerminalError("Durable promise should be completed");
      }
      return value;
    },
    unblock: async (ctx: restate.WorkflowSharedContext, value: string) => {
      await ctx.promise<string>("p").resolve(value);
    },
    getState: async (ctx: restate.WorkflowSharedContext) => {
      const input = await ctx.get<string>("input");
      return input ? input : undefined;
    },
  },
});

// ---------------------------------------------------------------- non-determinism

// Executions per key in this process: odd ones take the "left" branch,
// even ones the "right", so a replay never matches the journal of the
// attempt before.
const executions = new Map<string, number>();
function left(ctx: ObjCtx): boolean {
  const n = (executions.get(ctx.key) ?? 0) + 1;
  executions.set(ctx.key, n);
  return n % 2 === 1;
}

const counterAbc = (ctx: ObjCtx) => ctx.objectClient<typeof Counter>({ name: "Counter" }, "abc");

// Each handler does the diverging thing, then sleeps 100 ms (so the attempt
// suspends and the next one replays), then adds 1 to Counter/<key>: which
// must never happen.
async function thenIncrement(ctx: ObjCtx) {
  await ctx.sleep(100);
  ctx.objectSendClient<typeof Counter>({ name: "Counter" }, ctx.key).add(1);
}

export const NonDeterministic = restate.object({
  name: "NonDeterministic",
  handlers: {
    eitherSleepOrCall: async (ctx: ObjCtx) => {
      if (left(ctx)) await ctx.sleep(100);
      else await counterAbc(ctx).get();
      await thenIncrement(ctx);
    },
    callDifferentMethod: async (ctx: ObjCtx) => {
      if (left(ctx)) await counterAbc(ctx).get();
      else await counterAbc(ctx).reset();
      await thenIncrement(ctx);
    },
    backgroundInvokeWithDifferentTargets: async (ctx: ObjCtx) => {
      const send = ctx.objectSendClient<typeof Counter>({ name: "Counter" }, "abc");
      if (left(ctx)) send.get();
      else send.reset();
      await thenIncrement(ctx);
    },
    setDifferentKey: async (ctx: ObjCtx) => {
      ctx.set(left(ctx) ? "a" : "b", "my-state");
      await thenIncrement(ctx);
    },
  },
});
