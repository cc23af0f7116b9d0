// The services of the test deployment.  See README.md for their contracts.

import * as restate from "@restatedev/restate-sdk";
import { recordExecution } from "./effects.ts";

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const inv = (ctx: restate.Context) => String(ctx.request().id);

export const Greeter = restate.service({
  name: "Greeter",
  handlers: {
    greet: async (ctx: restate.Context, name: string) => {
      recordExecution({ svc: "Greeter", h: "greet", inv: inv(ctx), input: name ?? null });
      return `Hello ${name ?? "world"}!`;
    },
    // Transactionality probe: the log line shows whether the invocation ran.
    count: async (ctx: restate.Context, tag: unknown) => {
      recordExecution({ svc: "Greeter", h: "count", inv: inv(ctx), tag: tag ?? null });
      return tag ?? null;
    },
  },
});

type StepsInput = { steps?: number; delayMs?: number } | number | null | undefined;

export const Steps = restate.service({
  name: "Steps",
  handlers: {
    run: async (ctx: restate.Context, input: StepsInput) => {
      const opts = typeof input === "number" ? { steps: input } : (input ?? {});
      const steps = opts.steps ?? 10;
      const delayMs = opts.delayMs ?? 0;
      const id = inv(ctx);
      let acc = 0;
      for (let i = 1; i <= steps; i++) {
        const r = await ctx.run(`step-${i}`, async () => {
          if (delayMs > 0) await sleep(delayMs);
          recordExecution({ svc: "Steps", h: "run", inv: id, step: i });
          return { i, v: i * 2 };
        });
        acc += r.v;
      }
      return { steps, acc };
    },
  },
});

export const Probe = restate.service({
  name: "Probe",
  handlers: {
    // Retryable failure on the first two executions of an invocation.
    failTwice: async (ctx: restate.Context, tag: unknown) => {
      const k = recordExecution({ svc: "Probe", h: "failTwice", inv: inv(ctx), tag: tag ?? null });
      if (k <= 2) throw new Error(`transient failure ${k}`);
      return `ok after ${k} attempts`;
    },
    terminal: async (ctx: restate.Context, msg: string | null) => {
      recordExecution({ svc: "Probe", h: "terminal", inv: inv(ctx), input: msg ?? null });
      throw new restate.TerminalError(msg ?? "boom");
    },
    // First execution fails with RetryableError{retryAfter}: the SDK puts the
    // delay into ErrorMessage.next_retry_delay.
    retryAfter: async (ctx: restate.Context, ms: number | null) => {
      const delay = ms ?? 1000;
      const k = recordExecution({ svc: "Probe", h: "retryAfter", inv: inv(ctx), ms: delay });
      if (k === 1) throw new restate.RetryableError(`retry after ${delay} ms`, { retryAfter: delay });
      return `ok after ${k} attempts`;
    },
    // A ctx.run step that always fails, with the SDK's own retry policy: the
    // SDK counts attempts from StartMessage.retry_count_since_last_stored_entry
    // and, once they are used up, journals the step as failed.
    runRetry: async (ctx: restate.Context, attempts: number | null) => {
      const max = attempts ?? 3;
      try {
        await ctx.run(
          "flaky",
          async () => {
            const k = recordExecution({ svc: "Probe", h: "runRetry", inv: inv(ctx) });
            throw new Error(`flaky step failed (execution ${k})`);
          },
          { maxRetryAttempts: max, initialRetryInterval: { milliseconds: 10 } },
        );
        return "unexpected success";
      } catch (e) {
        if (e instanceof restate.TerminalError) return `gave up: ${e.message}`;
        throw e;
      }
    },
    echo: async (ctx: restate.Context, x: unknown) => {
      recordExecution({ svc: "Probe", h: "echo", inv: inv(ctx) });
      return x ?? null;
    },
    headers: async (ctx: restate.Context) => Object.fromEntries(ctx.request().headers),
    // Durable timer: journals a Sleep command, completes after ms.
    sleep: async (ctx: restate.Context, ms: number | null) => {
      const delay = ms ?? 1000;
      recordExecution({ svc: "Probe", h: "sleep", inv: inv(ctx), ms: delay });
      await ctx.sleep(delay);
      return `slept ${delay} ms`;
    },
    // Service-to-service call: Greeter/greet(name) through the runtime.
    call: async (ctx: restate.Context, name: string | null) => {
      recordExecution({ svc: "Probe", h: "call", inv: inv(ctx), input: name ?? null });
      return ctx.serviceClient(Greeter).greet(name ?? "callee");
    },
  },
});

export const Counter = restate.object({
  name: "Counter",
  handlers: {
    add: async (ctx: restate.ObjectContext, n: number | null) => {
      const value = ((await ctx.get<number>("count")) ?? 0) + (n ?? 1);
      ctx.set("count", value);
      recordExecution({ svc: "Counter", h: "add", inv: inv(ctx), key: ctx.key, n: n ?? 1, value });
      return value;
    },
    get: restate.handlers.object.shared(async (ctx: restate.ObjectSharedContext) => {
      return (await ctx.get<number>("count")) ?? 0;
    }),
    reset: async (ctx: restate.ObjectContext) => {
      recordExecution({ svc: "Counter", h: "reset", inv: inv(ctx), key: ctx.key });
      ctx.clearAll();
    },
  },
});

// Only exposed by variant 2 of the deployment (re-registration tests).
export const Extra = restate.service({
  name: "Extra",
  handlers: {
    ping: async (ctx: restate.Context) => {
      recordExecution({ svc: "Extra", h: "ping", inv: inv(ctx) });
      return "pong";
    },
  },
});
