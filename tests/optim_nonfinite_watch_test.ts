/**
 * src/optim/nonfinite_watch.ts: the cumulative skip counter of the step
 * header becomes one NonFiniteGradientError per new skip (named tensor, or
 * the caller's foundInf flag, and call), read back with one staging buffer and at most one readback in flight.
 */

import assert from "node:assert/strict";
import { NonFiniteGradientError } from "../src/errors.ts";
import { createFilled } from "../src/gpu/buffers.ts";
import { FOUND_INF_SKIP } from "../src/gpu/layout.ts";
import { NonFiniteWatch } from "../src/optim/nonfinite_watch.ts";
import {
  STEP_READBACK_BYTES,
  type StepHeader,
} from "../src/optim/step_scalars.ts";
import { testDevice } from "./gpu_util.ts";

const device = await testDevice();

const header = (
  skipped: number,
  badTensor: number,
  badCall: number,
): StepHeader => ({
  skip: 1,
  t: 5,
  ring: 0,
  skipped,
  badTensor,
  calls: 9,
  badCall,
  refused: 0,
});

Deno.test("nonfinite watch: each new skip is one error, named; a loaded state's skips are not news", () => {
  const own = (b: GPUBuffer) => b;
  const step = createFilled(
    device,
    new Uint32Array(STEP_READBACK_BYTES / 4),
    GPUBufferUsage.COPY_SRC,
    "step",
  );
  const w = new NonFiniteWatch(device, step, own, (i) => ["a", "b"][i]);
  w.observe(header(0, 0, 0));
  assert.equal(w.take(), undefined);
  w.observe(header(1, 2, 7));
  const e = w.take();
  assert.ok(e instanceof NonFiniteGradientError);
  assert.equal(e.tensor, "b");
  assert.equal(e.call, 7);
  assert.equal(w.take(), undefined, "taken once");
  w.observe(header(1, 2, 7));
  assert.equal(w.take(), undefined, "the same skip again is not news");
  w.reset(3);
  w.observe(header(3, 1, 8));
  assert.equal(w.take(), undefined);
  // A skip for the caller's foundInf flag names no tensor.
  w.observe(header(4, FOUND_INF_SKIP, 9));
  const flagged = w.take();
  assert.ok(flagged instanceof NonFiniteGradientError);
  assert.deepEqual([flagged.foundInf, flagged.tensor, flagged.call], [
    true,
    "",
    9,
  ]);
  step.destroy();
});

Deno.test("nonfinite watch: poll reads the header with its one staging buffer, one readback at a time", async () => {
  const buffers: GPUBuffer[] = [];
  const own = (b: GPUBuffer) => (buffers.push(b), b);
  const words = new Uint32Array(STEP_READBACK_BYTES / 4);
  words[4] = 1; // skipped
  words[5] = 1; // 1 + tensor index
  words[9] = 4; // bad call
  const step = createFilled(device, words, GPUBufferUsage.COPY_SRC, "step");
  const w = new NonFiniteWatch(device, step, own, () => "w");
  for (let i = 0; i < 5; i++) w.poll();
  await w.settle();
  assert.equal(buffers.length, 1, "one staging buffer");
  const e = w.take();
  assert.ok(e instanceof NonFiniteGradientError);
  assert.equal(e.call, 4);
  step.destroy();
  buffers[0].destroy();
});
