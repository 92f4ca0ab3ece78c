/**
 * src/optim/found_inf.ts: a `foundInf` step option is checked on the host
 * (buffer, offset, usage, mapping) and copied into word FOUND_INF_WORD of
 * the optimizer's flag buffer, bit for bit.
 */

import assert from "node:assert/strict";
import { InvalidOptionError } from "../src/errors.ts";
import { createFilled, readBuffer } from "../src/gpu/buffers.ts";
import { FOUND_INF_WORD } from "../src/gpu/layout.ts";
import { encodeFoundInf, foundInfSource } from "../src/optim/found_inf.ts";
import { TENSOR_USAGE, testDevice } from "./gpu_util.ts";

const device = await testDevice();

Deno.test("found inf: a GPUBuffer is its first 4 bytes, a binding its offset; bad ones are InvalidOptionErrors", () => {
  const b = device.createBuffer({ size: 8, usage: TENSOR_USAGE });
  try {
    assert.deepEqual(foundInfSource(b), { buffer: b, offset: 0 });
    assert.deepEqual(foundInfSource({ buffer: b, offset: 4 }), {
      buffer: b,
      offset: 4,
    });
    assert.deepEqual(foundInfSource({ buffer: b, offset: 4, size: 4 }), {
      buffer: b,
      offset: 4,
    });
    for (const offset of [8, 3, 1.5, -4, NaN, "0"]) {
      assert.throws(
        () => foundInfSource({ buffer: b, offset } as never),
        (e: Error) =>
          e instanceof InvalidOptionError &&
          /foundInf: offset:/.test(e.message),
        `offset ${String(offset)}`,
      );
    }
    for (const v of [null, undefined, {}, [b], "flag"]) {
      assert.throws(() => foundInfSource(v), InvalidOptionError);
    }
  } finally {
    b.destroy();
  }
});

Deno.test("found inf: the copy puts the caller's word, bits as they are, in word FOUND_INF_WORD of the flags and nothing else", async () => {
  const flags = createFilled(
    device,
    new Uint32Array([7, 8, 9, 10]),
    GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
    "flags",
  );
  const caller = createFilled(
    device,
    new Uint32Array([1, 0x7fc00000, 3]),
    GPUBufferUsage.COPY_SRC,
    "caller",
  );
  try {
    const enc = device.createCommandEncoder();
    encodeFoundInf(enc, foundInfSource({ buffer: caller, offset: 4 }), flags);
    device.queue.submit([enc.finish()]);
    const want = [7, 8, 9, 10];
    want[FOUND_INF_WORD] = 0x7fc00000;
    assert.deepEqual(
      [...new Uint32Array(await readBuffer(device, flags))],
      want,
    );
  } finally {
    flags.destroy();
    caller.destroy();
  }
});
