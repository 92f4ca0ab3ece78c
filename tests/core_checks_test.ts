/** src/core/checks.ts: known keys with suggestions, null refused, f32-aware numbers, integers, booleans. */

import assert from "node:assert/strict";
import { InvalidOptionError } from "../src/errors.ts";
import {
  checkBoolean,
  checkF32,
  checkInteger,
  checkKeys,
  closest,
  F32_MAX,
  F32_MIN_NORMAL,
  given,
} from "../src/core/checks.ts";

function rejects(f: () => unknown, text: string): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof InvalidOptionError, `got ${e}`);
    assert.ok(e.message.includes(text), `"${e.message}" lacks "${text}"`);
    return true;
  });
}

Deno.test("closest: typos, case and separators map to the valid name; far names to nothing", () => {
  const valid = ["lr", "betas", "eps", "weightDecay", "topkBlockSize"];
  assert.equal(closest("weight_decay", valid), "weightDecay");
  assert.equal(closest("WEIGHTDECAY", valid), "weightDecay");
  assert.equal(closest("lR", valid), "lr");
  assert.equal(closest("beta", valid), "betas");
  assert.equal(closest("topKBlocksize", valid), "topkBlockSize");
  assert.equal(closest("momentum", valid), undefined);
});

Deno.test("checkKeys: undefined is {}, non-objects and unknown keys are refused with the valid list", () => {
  assert.deepEqual(checkKeys(undefined, ["a"], "x"), {});
  const o = { a: 1 };
  assert.equal(checkKeys(o, ["a", "b"], "x"), o);
  rejects(
    () => checkKeys({ c: 1 }, ["a", "b"], "Opts"),
    'Opts: unknown option "c"; valid options: a, b',
  );
  rejects(
    () => checkKeys({ A: 1 }, ["a", "b"], "Opts"),
    'unknown option "A" (did you mean "a"?)',
  );
  for (const bad of [null, 1, "s", [1], new Uint8Array(1)]) {
    rejects(
      () => checkKeys(bad, ["a"], "Opts"),
      "Opts: expected an options object",
    );
  }
});

Deno.test("given: absent or undefined gives the default; null is refused", () => {
  assert.equal(given({}, "lr", 5), 5);
  assert.equal(given({ lr: undefined }, "lr", 5), 5);
  assert.equal(given({ lr: 0 }, "lr", 5), 0);
  rejects(
    () => given({ lr: null }, "lr", 5),
    "lr: got null; leave the option out for its default (5)",
  );
});

Deno.test("checkF32: finite as an f32, with inclusive and exclusive lower bounds", () => {
  assert.equal(checkF32(F32_MAX, "x"), F32_MAX);
  assert.equal(checkF32(-1, "x"), -1);
  assert.equal(checkF32(0, "x", { min: 0 }), 0);
  rejects(
    () => checkF32(0, "x", { minExclusive: 0 }),
    "x: expected a finite number > 0, got 0",
  );
  rejects(
    () => checkF32(-1e-30, "x", { min: 0 }),
    "x: expected a finite number >= 0, got -1e-30",
  );
  rejects(() => checkF32(3.5e38, "x"), "x: 3.5e+38 overflows f32");
  rejects(() => checkF32(NaN, "x"), "got NaN");
  rejects(() => checkF32("1", "x"), 'got "1"');
  rejects(() => checkF32(1n, "x"), "got 1n");
  assert.equal(Math.fround(F32_MIN_NORMAL), 2 ** -126);
});

Deno.test("checkInteger and checkBoolean: ranges and types, no coercion", () => {
  assert.equal(checkInteger(3, "n", 1, 3), 3);
  rejects(
    () => checkInteger(4, "n", 1, 3),
    "n: expected an integer in [1, 3], got 4",
  );
  rejects(() => checkInteger(1.5, "n", 1, 3), "got 1.5");
  rejects(() => checkInteger("2", "n", 1, 3), 'got "2"');
  assert.equal(checkBoolean(false, "b"), false);
  rejects(
    () => checkBoolean("false", "b"),
    'b: expected true or false, got "false"',
  );
  rejects(() => checkBoolean(0, "b"), "got 0");
});
