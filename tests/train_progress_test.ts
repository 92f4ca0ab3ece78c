/**
 * src/train/progress.ts on an injected stream under a fake clock (the
 * global `setTimeout`, `clearTimeout` and `Date.now`, which the bar's library
 * reads): off a terminal, plain lines with every field formatted, one at
 * start, one per `notTtyEverySeconds` timer tick and one at stop, no control
 * characters and no empty line; on a terminal, redraws in place; bad options
 * are an `InvalidOptionError`.
 */

import assert from "node:assert/strict";
import { InvalidOptionError } from "../src/errors.ts";
import { ProgressBar, type ProgressOptions } from "../src/train/progress.ts";

/** A stream that records what is written. */
function recorder(isTTY: boolean) {
  const chunks: string[] = [];
  const stream = {
    isTTY,
    columns: 200,
    write(s: string, cb?: () => void) {
      chunks.push(s);
      cb?.();
      return true;
    },
  };
  return {
    stream: stream as unknown as NodeJS.WritableStream,
    text: () => chunks.join(""),
  };
}

/** Fake timers and clock for the duration of `fn`. */
function withFakeClock(
  fn: (clock: {
    /** Delays of the timers now pending, in ms. */
    pending: () => number[];
    /** Moves the clock by `ms` and runs the timers that fall due. */
    advance: (ms: number) => void;
  }) => void,
): void {
  const real = {
    setTimeout: globalThis.setTimeout,
    clearTimeout: globalThis.clearTimeout,
    now: Date.now,
  };
  let now = 1_000_000;
  let nextId = 1;
  const timers = new Map<number, { at: number; ms: number; fn: () => void }>();
  Object.assign(globalThis, {
    setTimeout: (f: () => void, ms: number) => {
      timers.set(nextId, { at: now + ms, ms, fn: f });
      return nextId++;
    },
    clearTimeout: (id: number) => void timers.delete(id),
  });
  Date.now = () => now;
  try {
    fn({
      pending: () => [...timers.values()].map((t) => t.ms),
      advance(ms) {
        const end = now + ms;
        for (;;) {
          const due = [...timers.entries()].filter(([, t]) => t.at <= end)
            .sort(([, a], [, b]) => a.at - b.at)[0];
          if (!due) break;
          timers.delete(due[0]);
          now = due[1].at;
          due[1].fn();
        }
        now = end;
      },
    });
  } finally {
    Object.assign(globalThis, {
      setTimeout: real.setTimeout,
      clearTimeout: real.clearTimeout,
    });
    Date.now = real.now;
  }
}

const FIELDS = {
  epoch: 1,
  loss: 0.123456,
  accuracy: 0.87654,
  samplesPerSecond: 1234.5,
};

Deno.test("progress: off a terminal, a plain line at start, one per interval and one at stop", () => {
  withFakeClock((clock) => {
    const out = recorder(false);
    const bar = new ProgressBar({
      total: 100,
      epochs: 3,
      label: "MicroAdam",
      notTtyEverySeconds: 5,
      stream: out.stream,
    });
    bar.start(0);
    const first =
      "MicroAdam ░░░░░░░░░░░░░░░░░░░░░░░░ 0% | step 0/100 | epoch -/3 | loss - | acc - | - samples/s | ETA 0s\n";
    assert.equal(out.text(), first);
    assert.deepEqual(clock.pending(), [5000]);

    // Updates only store the figures: nothing is printed until the timer.
    clock.advance(3000);
    bar.update(10, FIELDS);
    clock.advance(1000);
    assert.equal(out.text(), first);

    // 10 steps in 3 s: 90 left take 27 s (the ETA rounds to 5 s above 10 s).
    clock.advance(1000);
    const second =
      "MicroAdam ██░░░░░░░░░░░░░░░░░░░░░░ 10% | step 10/100 | epoch 1/3 | loss 0.1235 | acc 87.7% | 1235 samples/s | ETA 25s\n";
    assert.equal(out.text(), first + second);
    assert.deepEqual(clock.pending(), [5000]);

    // No change in 5 s still prints a line; then two more updates and stop.
    clock.advance(5000);
    assert.equal(out.text(), first + second + second);
    bar.update(55, { ...FIELDS, epoch: 2, loss: 2, accuracy: 0.5 });
    bar.update(100, { ...FIELDS, epoch: 3, loss: 0.05, accuracy: 1 });
    bar.stop();
    const last = out.text().slice((first + second + second).length);
    assert.match(
      last,
      /^MicroAdam █{24} 100% \| step 100\/100 \| epoch 3\/3 \| loss 0\.0500 \| acc 100\.0% \| 1235 samples\/s \| ETA 0s\n$/,
    );
    assert.deepEqual(clock.pending(), []); // the timer is gone
    // deno-lint-ignore no-control-regex
    assert.doesNotMatch(out.text(), /[\x1b\r]/);
  });
});

Deno.test("progress: the default interval is 10 s and the default label train; a resumed run starts at its step", () => {
  withFakeClock((clock) => {
    const out = recorder(false);
    const bar = new ProgressBar({ total: 40, epochs: 2, stream: out.stream });
    bar.start(30);
    assert.deepEqual(clock.pending(), [10_000]);
    assert.equal(
      out.text(),
      "train ██████████████████░░░░░░ 75% | step 30/40 | epoch -/2 | loss - | acc - | - samples/s | ETA 0s\n",
    );
    clock.advance(1000);
    bar.update(31, FIELDS); // 1 step a second: 9 s left
    clock.advance(8_999);
    assert.equal(out.text().split("\n").length, 2);
    clock.advance(1);
    assert.equal(out.text().split("\n").length, 3);
    bar.stop();
    assert.equal(out.text().split("\n").length, 4);
    assert.ok(
      out.text().endsWith(
        "step 31/40 | epoch 1/2 | loss 0.1235 | acc 87.7% | 1235 samples/s | ETA 9s\n",
      ),
      out.text(),
    );
  });
});

Deno.test("progress: on a terminal it redraws one line in place", () => {
  withFakeClock((clock) => {
    const out = recorder(true);
    const bar = new ProgressBar({ total: 10, epochs: 1, stream: out.stream });
    bar.start(0);
    clock.advance(500);
    bar.update(5, FIELDS);
    clock.advance(500);
    bar.update(10, FIELDS);
    bar.stop();
    const text = out.text();
    // Only the final newline; each drawing goes back to column 1 first.
    assert.equal(text.indexOf("\n"), text.length - 1);
    // deno-lint-ignore no-control-regex
    const draws = text.split(/\x1b\[1G/).filter((s) => s.includes("step"));
    assert.ok(draws.length >= 3, JSON.stringify(text));
    assert.match(draws[0], /^train ░{24} 0% \| step 0\/10 /);
    assert.match(
      draws.at(-1)!,
      /^train █{24} 100% \| step 10\/10 \| epoch 1\/1 \| loss 0\.1235 \| acc 87\.7% \| 1235 samples\/s/,
    );
    assert.deepEqual(clock.pending(), []);
  });
});

Deno.test("progress: bad options are an InvalidOptionError naming the option", () => {
  const out = recorder(false);
  const base: ProgressOptions = { total: 10, epochs: 1, stream: out.stream };
  const cases: [Partial<ProgressOptions>, string][] = [
    [{ total: 0 }, "total: expected an integer >= 1, got 0"],
    [{ total: 2.5 }, "total: expected an integer >= 1, got 2.5"],
    [{ epochs: NaN }, "epochs: expected an integer >= 1, got NaN"],
    [
      { notTtyEverySeconds: 0 },
      "notTtyEverySeconds: expected a finite number > 0, got 0",
    ],
    [
      { notTtyEverySeconds: Infinity },
      "notTtyEverySeconds: expected a finite number > 0, got Infinity",
    ],
  ];
  for (const [bad, message] of cases) {
    assert.throws(() => new ProgressBar({ ...base, ...bad }), (e: unknown) => {
      assert.ok(e instanceof InvalidOptionError, `${e}`);
      assert.equal(e.message, message);
      return true;
    });
  }
  assert.equal(out.text(), "");
});
