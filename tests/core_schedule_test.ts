/**
 * src/core/schedule.ts: closed-form values of every schedule and the
 * rejection of invalid arguments.
 *
 * Note the conventions, as documented: linearWarmup counts 1-based calls
 * (call w reaches 1), cosineDecay's warm-up is (step + 1) / (w + 1) and its
 * decay starts at step w, stepDecay decays at every multiple of stepSize.
 */

import assert from "node:assert/strict";
import { InvalidOptionError } from "../src/errors.ts";
import {
  constant,
  cosineDecay,
  linearWarmup,
  stepDecay,
} from "../src/core/schedule.ts";

const close = (got: number, want: number, what: string) =>
  assert.ok(
    Math.abs(got - want) <= 1e-15 * Math.max(1, Math.abs(want)),
    `${what}: ${got} vs ${want}`,
  );

/** Asserts `f` throws a RangeError whose message has every part. */
function rejects(f: () => unknown, ...parts: string[]): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof InvalidOptionError, `got ${e}`);
    for (const p of parts) {
      assert.ok(e.message.includes(p), `"${e.message}" lacks "${p}"`);
    }
    return true;
  });
}

Deno.test("constant: 1 at every step", () => {
  const s = constant();
  for (const step of [0, 1, 2, 1e6]) assert.equal(s(step), 1);
});

Deno.test("linearWarmup(w): step / w up to 1, then 1", () => {
  const s = linearWarmup(4);
  assert.deepEqual([1, 2, 3, 4, 5, 9, 1e6].map(s), [
    0.25,
    0.5,
    0.75,
    1,
    1,
    1,
    1,
  ]);
  const t = linearWarmup(3);
  for (let step = 1; step <= 10; step++) {
    assert.equal(t(step), Math.min(1, step / 3), `step ${step}`);
  }
  assert.deepEqual([1, 2, 100].map(linearWarmup(1)), [1, 1, 1]);
});

Deno.test("cosineDecay: 1 at call 1 -> minFactor at call totalSteps along half a cosine", () => {
  const s = cosineDecay(11);
  // Default minFactor 0: 0.5 (1 + cos(π (step − 1) / 10)) on calls 1..11.
  for (let step = 1; step <= 11; step++) {
    close(
      s(step),
      0.5 * (1 + Math.cos(Math.PI * (step - 1) / 10)),
      `step ${step}`,
    );
  }
  assert.equal(s(1), 1);
  close(s(6), 0.5, "half way");
  close(s(11), 0, "end");
  assert.equal(s(12), s(11));
  assert.equal(s(1000), s(11));
  // minFactor m: m + (1 − m) · 0.5 (1 + cos).
  const m = cosineDecay(21, { minFactor: 0.1 });
  close(m(1), 1, "m(1)");
  close(m(11), 0.1 + 0.9 * 0.5, "m(11)");
  close(m(6), 0.1 + 0.9 * 0.5 * (1 + Math.SQRT1_2), "m(6)");
  close(m(21), 0.1, "m(21)");
  close(m(25), 0.1, "m(25)");
  // Monotone non-increasing.
  for (let step = 2; step <= 25; step++) assert.ok(m(step) <= m(step - 1));
  // minFactor 1 is constant.
  const one = cosineDecay(5, { minFactor: 1 });
  assert.deepEqual([1, 2, 5, 9].map(one), [1, 1, 1, 1]);
});

Deno.test("cosineDecay with warm-up: step / w on calls 1..w, then the cosine from 1 to minFactor at totalSteps", () => {
  const s = cosineDecay(10, { warmupSteps: 3, minFactor: 0.2 });
  close(s(1), 1 / 3, "s(1)");
  close(s(2), 2 / 3, "s(2)");
  close(s(3), 1, "s(3)");
  // Decay calls 4..10: x = (step − 4) / 6.
  for (let step = 4; step <= 10; step++) {
    const x = (step - 4) / 6;
    close(
      s(step),
      0.2 + 0.8 * 0.5 * (1 + Math.cos(Math.PI * x)),
      `step ${step}`,
    );
  }
  close(s(4), 1, "first decay call");
  close(s(10), 0.2, "end");
  close(s(50), 0.2, "after");
  // One decay call left after the warm-up: it is already the minimum.
  const w = cosineDecay(3, { warmupSteps: 2 });
  assert.deepEqual([1, 2].map(w), [0.5, 1]);
  close(w(3), 1, "w(3)");
  close(w(4), 0, "w(4)");
});

Deno.test("stepDecay(n, γ): γ^floor((step − 1) / n), so each period lasts n calls", () => {
  const s = stepDecay(2, 0.5);
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map(s), [
    1,
    1,
    0.5,
    0.5,
    0.25,
    0.25,
    0.125,
  ]);
  const t = stepDecay(3, 0.1);
  for (let step = 1; step <= 12; step++) {
    close(t(step), 0.1 ** Math.floor((step - 1) / 3), `step ${step}`);
  }
  // γ > 1 is allowed (growth).
  assert.equal(stepDecay(1, 2)(4), 8);
});

Deno.test("schedules: invalid arguments throw InvalidOptionError (a RangeError) naming the argument and value", () => {
  for (const v of [0, -1, 1.5, NaN, Infinity]) {
    rejects(
      () => linearWarmup(v),
      "warmupSteps must be an integer > 0",
      `got ${v}`,
    );
    rejects(
      () => cosineDecay(v),
      "totalSteps must be an integer > 0",
      `got ${v}`,
    );
    rejects(
      () => stepDecay(v, 0.5),
      "stepSize must be an integer > 0",
      `got ${v}`,
    );
  }
  for (const v of [-0.1, 1.1, NaN]) {
    rejects(
      () => cosineDecay(10, { minFactor: v }),
      "minFactor must be in [0, 1]",
      `got ${v}`,
    );
  }
  for (const v of [-1, 0.5, NaN, Infinity, 10]) {
    rejects(
      () => cosineDecay(10, { warmupSteps: v }),
      "warmupSteps must be an integer in [0, totalSteps)",
      `got ${v}`,
    );
  }
  for (const v of [0, -0.5, NaN, Infinity]) {
    rejects(
      () => stepDecay(2, v),
      "gamma must be a finite number > 0",
      `got ${v}`,
    );
  }
  // Boundaries accepted.
  cosineDecay(1, { minFactor: 0, warmupSteps: 0 });
  cosineDecay(1, { minFactor: 1 });
  stepDecay(1, 1e-9);
});
