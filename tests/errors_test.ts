/** src/errors.ts: error classes carry their names and fields; describe() formats values for messages. */

import assert from "node:assert/strict";
import {
  CheckpointError,
  DatasetError,
  describe,
  GpuUnavailableError,
  InvalidOptionError,
  NonFiniteGradientError,
  TensorMismatchError,
} from "../src/errors.ts";

Deno.test("error classes: names, base classes and NonFiniteGradientError's fields", () => {
  const cases: [
    Error,
    string,
    ErrorConstructor | RangeErrorConstructor | TypeErrorConstructor,
  ][] = [
    [new InvalidOptionError("x"), "InvalidOptionError", RangeError],
    [new TensorMismatchError("x"), "TensorMismatchError", TypeError],
    [new GpuUnavailableError("x"), "GpuUnavailableError", Error],
    [new CheckpointError("x"), "CheckpointError", Error],
    [new DatasetError("x"), "DatasetError", Error],
  ];
  for (const [e, name, base] of cases) {
    assert.equal(e.name, name);
    assert.ok(e instanceof base, name);
    assert.equal(e.message, "x");
  }
  const nf = new NonFiniteGradientError("w1", 7);
  assert.equal(nf.name, "NonFiniteGradientError");
  assert.equal(nf.tensor, "w1");
  assert.equal(nf.call, 7);
  assert.match(nf.message, /tensor "w1" at step call 7/);
  assert.match(nf.message, /state is unchanged/);
  assert.equal(nf.foundInf, false);
  // Reported by the caller's foundInf flag: no tensor to name.
  const flagged = new NonFiniteGradientError("w1", 8, true);
  assert.equal(flagged.tensor, "");
  assert.equal(flagged.call, 8);
  assert.equal(flagged.foundInf, true);
  assert.equal(
    flagged.message,
    "non-finite gradient reported by the foundInf flag given to step call 8; the step was skipped and the optimizer state is unchanged",
  );
});

Deno.test("describe: numbers as written, strings quoted, arrays and typed arrays readable", () => {
  assert.equal(describe(NaN), "NaN");
  assert.equal(describe(-0.5), "-0.5");
  assert.equal(describe("f32"), '"f32"');
  assert.equal(describe(undefined), "undefined");
  assert.equal(describe(null), "null");
  assert.equal(describe([1, 0.9]), "[1,0.9]");
  assert.equal(describe(new Float32Array(3)), "Float32Array(3)");
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.equal(describe(cyclic), "[object Object]");
});
