// State, calls and errors of the e2e suite: Counter, ListObject, MapObject,
// Proxy, Failing, TestUtilsService and AwakeableHolder, with the names,
// inputs and behaviour of Restate's e2e services
// (restatedev/sdk-typescript packages/tests/restate-e2e-services), written
// here from their description.  See ../README.md ("The e2e deployment").

import * as restate from "@restatedev/restate-sdk";

type ObjCtx = restate.ObjectContext;

// ---------------------------------------------------------------- Counter

export const Counter = restate.object({
  name: "Counter",
  handlers: {
    add: async (ctx: ObjCtx, delta: number) => {
      const before = (await ctx.get<number>("counter")) ?? 0;
      ctx.set("counter", before + delta);
      return { oldValue: before, newValue: before + delta };
    },
    // Stores the sum, then fails terminally with the object's key as message.
    addThenFail: async (ctx: ObjCtx, delta: number) => {
      const before = (await ctx.get<number>("counter")) ?? 0;
      ctx.set("counter", before + delta);
      throw new restate.TerminalError(ctx.key);
    },
    get: restate.handlers.object.shared(async (ctx: restate.ObjectSharedContext) => {
      return (await ctx.get<number>("counter")) ?? 0;
    }),
    reset: async (ctx: ObjCtx) => {
      ctx.clear("counter");
    },
  },
});

// ---------------------------------------------------------------- ListObject

export const ListObject = restate.object({
  name: "ListObject",
  handlers: {
    append: async (ctx: ObjCtx, item: string) => {
      const items = (await ctx.get<string[]>("list")) ?? [];
      ctx.set("list", [...items, item]);
    },
    get: async (ctx: ObjCtx) => (await ctx.get<string[]>("list")) ?? [],
    // Returns the list and empties it.
    clear: async (ctx: ObjCtx) => {
      const items = (await ctx.get<string[]>("list")) ?? [];
      ctx.clear("list");
      return items;
    },
  },
});

// ---------------------------------------------------------------- MapObject

// Each map entry is a state key of its own.
export const MapObject = restate.object({
  name: "MapObject",
  handlers: {
    set: async (ctx: ObjCtx, entry: { key: string; value: string }) => {
      ctx.set(entry.key, entry.value);
    },
    get: async (ctx: ObjCtx, key: string) => (await ctx.get<string>(key)) ?? "",
    // Returns every entry, then clears the whole state.
    clearAll: async (ctx: ObjCtx) => {
      const entries: { key: string; value: string }[] = [];
      for (const key of await ctx.stateKeys()) {
        const value = await ctx.get<string>(key);
        if (value) entries.push({ key, value });
      }
      ctx.clearAll();
      return entries;
    },
  },
});

// ---------------------------------------------------------------- Proxy

// A call described by data; message is the input's bytes as an array of
// numbers, the result of Proxy/call likewise.
type ProxyRequest = {
  serviceName: string;
  virtualObjectKey?: string | null;
  handlerName: string;
  message: number[];
  delayMillis?: number | null;
  idempotencyKey?: string | null;
};

type ManyCallRequest = { proxyRequest: ProxyRequest; oneWayCall: boolean; awaitAtTheEnd: boolean };

function callOf(ctx: restate.Context, r: ProxyRequest) {
  return ctx.genericCall({
    service: r.serviceName,
    method: r.handlerName,
    key: r.virtualObjectKey ?? undefined,
    parameter: Uint8Array.from(r.message),
    inputSerde: restate.serde.binary,
    outputSerde: restate.serde.binary,
    idempotencyKey: r.idempotencyKey ?? undefined,
  });
}

function sendOf(ctx: restate.Context, r: ProxyRequest) {
  return ctx.genericSend({
    service: r.serviceName,
    method: r.handlerName,
    key: r.virtualObjectKey ?? undefined,
    parameter: Uint8Array.from(r.message),
    inputSerde: restate.serde.binary,
    delay: r.delayMillis ? { milliseconds: r.delayMillis } : undefined,
    idempotencyKey: r.idempotencyKey ?? undefined,
  }).invocationId;
}

export const Proxy = restate.service({
  name: "Proxy",
  handlers: {
    call: async (ctx: restate.Context, r: ProxyRequest) => Array.from(await callOf(ctx, r)),
    // Returns the invocation id of the one-way call.
    oneWayCall: async (ctx: restate.Context, r: ProxyRequest) => await sendOf(ctx, r),
    // In order: one-way calls, calls awaited at once, and calls awaited
    // only after all the others were made.
    manyCalls: async (ctx: restate.Context, requests: ManyCallRequest[]) => {
      const later: Promise<Uint8Array>[] = [];
      for (const r of requests) {
        if (r.oneWayCall) {
          await sendOf(ctx, r.proxyRequest);
        } else if (r.awaitAtTheEnd) {
          later.push(callOf(ctx, r.proxyRequest));
        } else {
          await callOf(ctx, r.proxyRequest);
        }
      }
      for (const p of later) await p;
    },
  },
});

// ---------------------------------------------------------------- Failing

type FailureToPropagate = { errorMessage: string; metadata?: Record<string, string> | null };

const terminal = (f: FailureToPropagate) =>
  new restate.TerminalError(f.errorMessage, { metadata: f.metadata ?? undefined });

// Process-wide attempt counters, as in the e2e suite (not Restate state).
let eventualSuccessCalls = 0;
let runSucceedsCalls = 0;
let runFailsCalls = 0;

export const Failing = restate.object({
  name: "Failing",
  handlers: {
    terminallyFailingCall: async (_ctx: ObjCtx, f: FailureToPropagate) => {
      throw terminal(f);
    },
    // Calls terminallyFailingCall on a random key; its failure propagates.
    callTerminallyFailingCall: async (ctx: ObjCtx, f: FailureToPropagate): Promise<string> => {
      await ctx.objectClient(FailingApi, ctx.rand.uuidv4()).terminallyFailingCall(f);
      throw new Error("terminallyFailingCall did not fail");
    },
    // Fails (retryably) on the first three executions, returns 4 on the fourth.
    failingCallWithEventualSuccess: async () => {
      eventualSuccessCalls++;
      const attempt = eventualSuccessCalls;
      if (attempt < 4) throw new Error(`Failed at attempt: ${attempt}`);
      eventualSuccessCalls = 0;
      return attempt;
    },
    terminallyFailingSideEffect: async (ctx: ObjCtx, f: FailureToPropagate) => {
      await ctx.run(() => {
        throw terminal(f);
      });
      throw new Error("the side effect did not fail");
    },
    // A ctx.run that fails until its minimumAttempts-th execution; returns
    // the number of executions.
    sideEffectSucceedsAfterGivenAttempts: async (ctx: ObjCtx, minimumAttempts: number) => {
      return await ctx.run(
        "failing-side-effect",
        () => {
          runSucceedsCalls++;
          const attempt = runSucceedsCalls;
          if (attempt < minimumAttempts) throw new Error(`Failed at attempt: ${attempt}`);
          runSucceedsCalls = 0;
          return attempt;
        },
        { retryIntervalFactor: 1, initialRetryInterval: { milliseconds: 10 } },
      );
    },
    // A ctx.run that always fails, with maxRetryAttempts; once the SDK gives
    // up (a TerminalError) returns how many executions there were.
    sideEffectFailsAfterGivenAttempts: async (ctx: ObjCtx, maxRetryAttempts: number) => {
      try {
        await ctx.run(
          "failing-side-effect",
          () => {
            runFailsCalls++;
            throw new Error(`Failed at attempt: ${runFailsCalls}`);
          },
          { maxRetryAttempts, retryIntervalFactor: 1, initialRetryInterval: { milliseconds: 10 } },
        );
      } catch (e) {
        if (e instanceof restate.TerminalError) return runFailsCalls;
        throw e;
      }
      throw new restate.TerminalError("the side effect was supposed to fail");
    },
  },
});
const FailingApi: typeof Failing = { name: "Failing" };

// ---------------------------------------------------------------- TestUtilsService

const invocation = (ctx: restate.Context, id: string) =>
  ctx.invocation(restate.InvocationIdParser.fromString(id));

export const TestUtilsService = restate.service({
  name: "TestUtilsService",
  handlers: {
    echo: async (_ctx: restate.Context, s: string) => s,
    uppercaseEcho: async (_ctx: restate.Context, s: string) => s.toUpperCase(),
    echoHeaders: async (ctx: restate.Context) => Object.fromEntries(ctx.request().headers.entries()),
    rawEcho: restate.handlers.handler(
      { input: restate.serde.binary, output: restate.serde.binary },
      async (_ctx: restate.Context, bytes: Uint8Array) => bytes,
    ),
    // n ctx.run steps; returns how many of them executed in this attempt.
    countExecutedSideEffects: async (ctx: restate.Context, n: number) => {
      let executed = 0;
      for (let i = 0; i < n; i++) {
        await ctx.run("count", () => {
          executed++;
        });
      }
      return executed;
    },
    cancelInvocation: async (ctx: restate.Context, id: string) => {
      invocation(ctx, id).cancel();
    },
    resolveSignal: async (ctx: restate.Context, r: { invocationId: string; signalName: string; value: string }) => {
      invocation(ctx, r.invocationId).signal(r.signalName).resolve(r.value);
    },
    rejectSignal: async (ctx: restate.Context, r: { invocationId: string; signalName: string; reason: string }) => {
      invocation(ctx, r.invocationId).signal(r.signalName).reject(r.reason);
    },
  },
});

// ---------------------------------------------------------------- AwakeableHolder

// Keeps an awakeable id made by someone else; unlock resolves it.
export const AwakeableHolder = restate.object({
  name: "AwakeableHolder",
  handlers: {
    hold: async (ctx: ObjCtx, id: string) => {
      ctx.set("id", id);
    },
    hasAwakeable: async (ctx: ObjCtx) => {
      const id = await ctx.get<string>("id");
      return id !== null && id !== undefined;
    },
    // Without a held awakeable: a retryable error (so an early unlock is
    // retried until the hold arrives).
    unlock: async (ctx: ObjCtx, payload: string) => {
      const id = await ctx.get<string>("id");
      if (id === null || id === undefined) throw new Error("No awakeable registered");
      ctx.resolveAwakeable(id, payload);
      ctx.clear("id");
    },
  },
});
