/**
 * bench/residency.ts: the probe's insertion, the peak it reports on this
 * device (llvmpipe runs a workgroup per CPU thread), and the diagnostic
 * kernels it compiles (the copies copy, item by item or in a loop).
 */

import assert from "node:assert/strict";
import {
  copyKernel,
  pressureKernel,
  residency,
  withProbe,
} from "../bench/residency.ts";
import { kernelSource } from "../src/gpu/kernels.ts";
import { readBuffer } from "../src/gpu/buffers.ts";
import { dispatchWith, TENSOR_USAGE, testDevice } from "./gpu_util.ts";

Deno.test("withProbe: the probe goes first in main, before the kernel's own code, and a kernel without main or a local index is refused", () => {
  const code = withProbe(
    "@compute @workgroup_size(64)\nfn main(@builtin(workgroup_id) w: vec3<u32>, @builtin(local_invocation_index) i: u32) {\n  let x = 1u;\n}",
  );
  const body = code.slice(code.indexOf("{") + 1);
  assert.ok(body.trimStart().startsWith("if (i == 0u) { probe_enter(); }"));
  assert.ok(body.indexOf("probe_enter()") < body.indexOf("let x = 1u;"));
  assert.ok(code.includes("fn probe_enter()"));
  assert.throws(() => withProbe("fn other() {}"), /no `fn main/);
  assert.throws(
    () => withProbe("@compute @workgroup_size(1) fn main() {}"),
    /local_invocation_index/,
  );
});

Deno.test("residency: at least one workgroup, and fewer than were dispatched (workgroups count themselves out), for a library kernel and a diagnostic kernel", async () => {
  const device = await testDevice();
  for (const code of [kernelSource("adam4"), pressureKernel(4, 8)]) {
    // residency's default, 132 · 48 workgroups: more than an H200 holds at
    // once (at most 32 per multiprocessor), let alone llvmpipe (one per CPU
    // thread). 256 were all resident at once on the H200.
    const groups = 132 * 48;
    const peak = await residency(device, code, {}, groups);
    assert.ok(peak >= 1 && peak < groups, `peak ${peak}`);
  }
});

Deno.test("copyKernel: every variant copies its source exactly", async () => {
  const device = await testDevice();
  for (
    const [items, checkEach, unrolled] of [
      [1, true, false],
      [4, false, false],
      [8, false, true],
    ] as const
  ) {
    const n = 4 * 256 * items * 3; // three workgroups' worth of u32
    const src = new Uint32Array(n).map((_, i) => (i * 2654435761) >>> 0);
    const a = device.createBuffer({ size: 4 * n, usage: TENSOR_USAGE });
    const b = device.createBuffer({ size: 4 * n, usage: TENSOR_USAGE });
    device.queue.writeBuffer(a, 0, src);
    const pipe = device.createComputePipeline({
      layout: "auto",
      compute: {
        module: device.createShaderModule({
          code: copyKernel(items, checkEach, unrolled),
        }),
        entryPoint: "main",
      },
    });
    dispatchWith(device, pipe, [a, b], 3);
    assert.deepEqual(new Uint32Array(await readBuffer(device, b)), src);
    a.destroy();
    b.destroy();
  }
});
