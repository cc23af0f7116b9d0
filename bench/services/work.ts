// The work every system in bench/compare runs: plain functions, no
// durability.  Each system wraps them in its own programming model
// (restate.ts, dbos.ts, plain.ts), so only the runtime around them differs.

export const STEPS = 10;

// Workload 1: a trivial handler.
export function greet(name: string): string {
  return `Hello, ${name}!`;
}

// Workload 2: one of the STEPS steps of a 10-step handler.
export function step(i: number): { i: number; v: number } {
  return { i, v: 2 * i };
}

// What the 10-step handler returns: {steps: 10, acc: 110}.
export function stepsResult(acc: number): { steps: number; acc: number } {
  return { steps: STEPS, acc };
}

// Workload 3: a counter per key; the new count after adding n.
export function addTo(count: number, n: number): number {
  return count + n;
}
