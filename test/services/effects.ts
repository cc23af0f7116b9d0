// Side-effect log shared by the test services.
//
// Every handler execution appends one JSON line to $DURABLE_TEST_LOG with
// fs.appendFileSync, so a line is on disk before the handler goes on and
// survives a kill -9 of this process.  Tests read the file to check how often
// something really ran (exactly-once steps, retries, transactionality).
//
// Execution counts ("attempt") are kept per (svc, h, inv, step) and primed from
// the existing log at startup, so they keep counting across restarts of the
// server as long as the same log file is used.

import fs from "node:fs";

const logPath = process.env.DURABLE_TEST_LOG || undefined;
const executions = new Map<string, number>();

type Entry = Record<string, unknown>;

function countKey(e: Entry): string | undefined {
  if (typeof e.svc !== "string" || typeof e.h !== "string") return undefined;
  return `${e.svc}\u0000${e.h}\u0000${String(e.inv)}\u0000${String(e.step ?? "")}`;
}

function primeFromLog(): void {
  if (!logPath || !fs.existsSync(logPath)) return;
  const text = fs.readFileSync(logPath, "utf8");
  // Never glue our first line onto a line left unfinished by a crash.
  if (text.length > 0 && !text.endsWith("\n")) fs.appendFileSync(logPath, "\n");
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      const key = countKey(JSON.parse(line) as Entry);
      if (key) executions.set(key, (executions.get(key) ?? 0) + 1);
    } catch {
      // a line torn by kill -9 in the middle of a write: ignore it
    }
  }
}
primeFromLog();

/**
 * Record one execution of a handler (or of one step of it).  Returns the
 * 1-based execution count for (svc, h, inv, step), which is also written to
 * the log line as "attempt".
 */
export function recordExecution(entry: { svc: string; h: string; inv: string; step?: number } & Entry): number {
  const key = countKey(entry)!;
  const attempt = (executions.get(key) ?? 0) + 1;
  executions.set(key, attempt);
  writeLine({ ...entry, attempt, ts: Date.now() });
  return attempt;
}

/** Append an arbitrary JSON line (used for misbehaviour records). */
export function writeLine(entry: Entry): void {
  if (!logPath) return;
  fs.appendFileSync(logPath, JSON.stringify(entry) + "\n");
}
