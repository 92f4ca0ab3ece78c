/**
 * src/optim/state_io.ts: a tensor's state spread over several buffer ranges
 * reads back as one byte array in coordinate order, writes back range by
 * range, and stateSizes adds the ranges up.
 */

import assert from "node:assert/strict";
import { createFilled, readRanges } from "../src/gpu/buffers.ts";
import {
  readState,
  stateSizes,
  type TensorStateRanges,
  writeState,
} from "../src/optim/state_io.ts";
import { STEP_READBACK_BYTES } from "../src/optim/step_scalars.ts";
import { testDevice } from "./gpu_util.ts";

const device = await testDevice();
const USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC;

Deno.test("state_io: ranges concatenate in order on read, split in order on write; sizes add up", async () => {
  const a = createFilled(
    device,
    new Uint8Array(64).map((_, i) => i),
    USAGE,
    "a",
  );
  const b = createFilled(
    device,
    new Uint8Array(64).map((_, i) => 100 + i),
    USAGE,
    "b",
  );
  const header = new Uint32Array(STEP_READBACK_BYTES / 4);
  header[1] = 7; // t
  header[3] = 2; // ring
  header[4] = 1; // skipped
  const step = createFilled(device, header, USAGE, "step");
  const perTensor: TensorStateRanges[] = [
    {
      window: [{ buffer: b, offset: 8, size: 8 }, {
        buffer: a,
        offset: 0,
        size: 4,
      }],
      codes: [{ buffer: a, offset: 16, size: 12 }],
    },
    { window: [{ buffer: b, offset: 32, size: 16 }] },
  ];
  assert.deepEqual(stateSizes(perTensor[0]), { window: 12, codes: 12 });
  const { header: h, buffers } = await readState(device, step, perTensor);
  assert.equal(h.t, 7);
  assert.equal(h.ring, 2);
  assert.equal(h.skipped, 1);
  assert.deepEqual(Array.from(buffers[0].window), [
    108,
    109,
    110,
    111,
    112,
    113,
    114,
    115,
    0,
    1,
    2,
    3,
  ]);
  assert.deepEqual(Array.from(buffers[0].codes), [
    16,
    17,
    18,
    19,
    20,
    21,
    22,
    23,
    24,
    25,
    26,
    27,
  ]);
  assert.deepEqual(
    Array.from(buffers[1].window),
    Array.from({ length: 16 }, (_, i) => 132 + i),
  );

  const fresh: Record<string, Uint8Array>[] = [{
    window: new Uint8Array(12).fill(7),
    codes: new Uint8Array(12).fill(9),
  }, { window: new Uint8Array(16).fill(5) }];
  writeState(device.queue, perTensor, fresh);
  const [ra, rb] = await readRanges(device, [
    { buffer: a, offset: 0, size: 64 },
    { buffer: b, offset: 0, size: 64 },
  ]);
  assert.deepEqual(Array.from(ra.subarray(0, 4)), [7, 7, 7, 7]);
  assert.deepEqual(
    Array.from(ra.subarray(4, 16)),
    Array.from({ length: 12 }, (_, i) => 4 + i),
    "between ranges: untouched",
  );
  assert.deepEqual(Array.from(ra.subarray(16, 28)), new Array(12).fill(9));
  assert.deepEqual(Array.from(rb.subarray(8, 16)), new Array(8).fill(7));
  assert.deepEqual(Array.from(rb.subarray(32, 48)), new Array(16).fill(5));
  for (const x of [a, b, step]) x.destroy();
});
