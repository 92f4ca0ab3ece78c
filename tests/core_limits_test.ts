/**
 * src/core/limits.ts: the gradient limit is the same rule on the CPU and the
 * GPU (a step with |g| >= 2^60 anywhere is skipped by both), and just under it
 * every optimizer stays finite with its CPU and GPU twins in agreement.
 */

import assert from "node:assert/strict";
import {
  Adam,
  AdamCpu,
  createTensor,
  MicroAdam,
  MicroAdamCpu,
  readTensor,
  toBf16Array,
  writeTensor,
} from "../mod.ts";
import { GRADIENT_LIMIT_LOG2 } from "../src/core/limits.ts";
import { microAdamGeometry } from "../src/core/geometry.ts";
import { fastPath } from "../src/optim/microadam.ts";
import { allWithinLimit } from "../src/reference/cpu_optimizer.ts";
import { testDevice } from "./gpu_util.ts";

const device = await testDevice();
const LIMIT = 2 ** GRADIENT_LIMIT_LOG2;

Deno.test("allWithinLimit: NaN, ±Inf and |g| >= 2^60 are out, the largest f32 and bf16 below are in", () => {
  const below = Math.fround(LIMIT * (1 - 2 ** -24)); // largest f32 under 2^60
  assert.ok(allWithinLimit(new Float32Array([below, -below, 0, 1e-45])));
  for (const bad of [LIMIT, -LIMIT, 2e38, -2e38, Infinity, -Infinity, NaN]) {
    assert.equal(allWithinLimit(new Float32Array([1, bad])), false, `${bad}`);
  }
  const bf16Below = toBf16Array([LIMIT * (1 - 2 ** -8)]); // largest bf16 under 2^60
  assert.ok(allWithinLimit(bf16Below));
  assert.equal(allWithinLimit(toBf16Array([LIMIT])), false);
  assert.equal(allWithinLimit(toBf16Array([-3e38])), false);
});

type Make =
  | "MicroAdam f32"
  | "MicroAdam bf16"
  | "MicroAdam f32 one-pass"
  | "MicroAdam bf16 one-pass"
  | "Adam";

/** MicroAdam's shape: blocks of 16; one EF block per top-k block for the one-pass kernels. */
function shape(make: Make) {
  const o = { lr: 0.01, density: 0.25, window: 3, topkBlockSize: 16 };
  return make.endsWith("one-pass") ? { ...o, efBlockSize: 16 } : o;
}

async function twinStep(make: Make, grads: Float32Array[]) {
  const n = grads[0].length;
  const init = new Float32Array(n).map((_, i) => Math.sin(i) * 0.5);
  const bf16 = make.startsWith("MicroAdam bf16");
  const gpuT = createTensor(device, init, {
    name: "w",
    dtype: bf16 ? "bf16" : "f32",
  });
  const cpuParam = bf16 ? toBf16Array(init) : init.slice();
  const cpuGrad = bf16 ? new Uint16Array(n) : new Float32Array(n);
  const cpuT = { name: "w", param: cpuParam, grad: cpuGrad };
  const o = shape(make);
  const gpu = make === "Adam"
    ? new Adam(device, [gpuT], { lr: 0.01 })
    : new MicroAdam(device, [gpuT], { ...o, dtype: bf16 ? "bf16" : "f32" });
  const cpu = make === "Adam"
    ? new AdamCpu([cpuT], { lr: 0.01 })
    : new MicroAdamCpu([cpuT], { ...o, dtype: bf16 ? "bf16" : "f32" });
  for (const g of grads) {
    writeTensor(device, gpuT, g);
    cpuGrad.set(bf16 ? toBf16Array(g) : g);
    gpu.step();
    cpu.step();
  }
  const gpuParams = await readTensor(device, gpuT);
  const cpuParams = bf16
    ? new Float32Array(
      new Uint32Array(Array.from(cpuParam, (b) => b << 16)).buffer,
    )
    : cpuParam as Float32Array;
  const status = [await gpu.status(), cpu.status()];
  gpu.dispose();
  gpuT.param.destroy();
  gpuT.grad.destroy();
  return { gpuParams, cpuParams, status };
}

const MAKES = [
  "MicroAdam f32",
  "MicroAdam bf16",
  "MicroAdam f32 one-pass",
  "MicroAdam bf16 one-pass",
  "Adam",
] as const;

for (const make of MAKES) {
  Deno.test(`${make}: a gradient of 2e38 or 2^60 skips the step on CPU and GPU alike; 2^59 stays finite and the twins agree`, async () => {
    const n = 64;
    if (make !== "Adam") {
      const g = microAdamGeometry(n, { efBlockSize: 4096, ...shape(make) });
      assert.equal(fastPath(g), make.endsWith("one-pass"), "kernel path");
    }
    // Two of them in one block of 16: |g| sums to 2^60 there at 2^59 (the
    // one-pass kernel's float sum is then not below the limit, and its
    // exact check by bits must find nothing).
    const huge = (v: number) => {
      const g = new Float32Array(n).map((_, i) => Math.cos(i));
      g[5] = v;
      g[6] = v;
      g[40] = -v;
      return g;
    };
    const normal = huge(0.5);
    for (const v of [2e38, LIMIT]) {
      const { gpuParams, cpuParams, status } = await twinStep(make, [
        normal,
        huge(v),
        normal,
      ]);
      assert.deepEqual(status[0], status[1], `${v}: status`);
      assert.equal(status[0].skipped, 1, `${v}: one skip`);
      assert.equal(status[0].step, 2);
      assert.ok(gpuParams.every(Number.isFinite), `${v}: GPU params finite`);
      assert.ok(cpuParams.every(Number.isFinite), `${v}: CPU params finite`);
    }
    const near = Math.fround(LIMIT / 2);
    const { gpuParams, cpuParams, status } = await twinStep(make, [
      huge(near),
      huge(near),
      normal,
      huge(near),
      normal,
    ]);
    assert.deepEqual(status[0], status[1]);
    assert.equal(status[0].skipped, 0);
    assert.ok(cpuParams.every(Number.isFinite), "CPU params finite");
    assert.ok(gpuParams.every(Number.isFinite), "GPU params finite");
    for (let i = 0; i < n; i++) {
      // f32: WGSL lets a GPU round sqrt and division within some ulps and
      // contract a multiply and an add (Adam lands an ulp apart on the
      // H200); the bf16 kernels round exactly.
      const tol = make.includes("bf16") ? 0 : 1e-6 * Math.abs(cpuParams[i]);
      assert.ok(
        Math.abs(gpuParams[i] - cpuParams[i]) <= tol,
        `${make} coordinate ${i}: GPU ${gpuParams[i]} vs CPU ${cpuParams[i]}`,
      );
    }
  });
}
