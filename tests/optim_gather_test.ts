/**
 * src/optim/gather.ts: gradients and parameters of gathered tensors are
 * copied into their arenas before a step, parameters copied back after it;
 * batches that are not gathered get no copies.
 */

import assert from "node:assert/strict";
import { createFilled, readRanges } from "../src/gpu/buffers.ts";
import type { Batch } from "../src/gpu/plan.ts";
import { encodeGatherIn, encodeGatherOut } from "../src/optim/gather.ts";
import { testDevice } from "./gpu_util.ts";

const device = await testDevice();
const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
  GPUBufferUsage.COPY_DST;

Deno.test("gather: in copies grads and params to their arena offsets; out copies params back", async () => {
  const param = createFilled(
    device,
    new Float32Array([1, 2, 3, 4]),
    USAGE,
    "p",
  );
  const grad = createFilled(device, new Float32Array([5, 6, 7, 8]), USAGE, "g");
  const arenaP = createFilled(device, new Float32Array(16), USAGE, "ap");
  const arenaG = createFilled(device, new Float32Array(16), USAGE, "ag");
  const batch: Batch = {
    params: { buffer: arenaP, offset: 0, size: 64 },
    grads: { buffer: arenaG, offset: 0, size: 64 },
    segments: [],
    gather: [{
      tensor: 0,
      param,
      paramOffset: 4,
      grad,
      gradOffset: 8,
      arenaOffset: 32,
      bytes: 8,
    }],
  };
  const notGathered: Batch = { ...batch, gather: undefined };
  let enc = device.createCommandEncoder();
  encodeGatherIn(enc, [batch, notGathered]);
  device.queue.submit([enc.finish()]);
  const [p, g] = await readRanges(device, [{
    buffer: arenaP,
    offset: 0,
    size: 64,
  }, { buffer: arenaG, offset: 0, size: 64 }]);
  assert.deepEqual(Array.from(new Float32Array(p.buffer)), [
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    2,
    3,
    0,
    0,
    0,
    0,
    0,
    0,
  ]);
  assert.deepEqual(Array.from(new Float32Array(g.buffer)), [
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    7,
    8,
    0,
    0,
    0,
    0,
    0,
    0,
  ]);
  device.queue.writeBuffer(arenaP, 32, new Float32Array([20, 30]));
  enc = device.createCommandEncoder();
  encodeGatherOut(enc, [batch]);
  device.queue.submit([enc.finish()]);
  const [back] = await readRanges(device, [{
    buffer: param,
    offset: 0,
    size: 16,
  }]);
  assert.deepEqual(Array.from(new Float32Array(back.buffer)), [1, 20, 30, 4]);
  for (const b of [param, grad, arenaP, arenaG]) b.destroy();
});
