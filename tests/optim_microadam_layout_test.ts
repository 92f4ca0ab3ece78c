/**
 * GPU MicroAdam against MicroAdamCpu across layouts: tensors split over
 * several storage bindings, gathered small tensors, tensors sharing a buffer,
 * tensors of different buffers sharing a batch (lanes).
 */

import assert from "node:assert/strict";
import { BF16_LANES, MicroAdam } from "../src/optim/microadam.ts";
import { fastLanes } from "../src/gpu/kernels.ts";
import { FAST_LANES } from "../src/gpu/layout.ts";
import { rng, TENSOR_USAGE, testSeed } from "./gpu_util.ts";
import {
  device,
  groupsOfTensor,
  limitedDevice,
  planOf,
  Twin,
} from "./optim_microadam.ts";

// ---- 3. Tensors over the storage-binding limit ---------------------------

Deno.test({
  name:
    "chunked: a 40M-element f32 tensor (160 MB) over a 128 MiB binding limit (llvmpipe's), 2 steps == CPU",
  async fn() {
    // A device with a larger limit (the H200) reports llvmpipe's,
    // so that the tensor is split there too.
    const gpuDevice = limitedDevice({
      maxStorageBufferBindingSize: Math.min(
        device.limits.maxStorageBufferBindingSize,
        128 * 2 ** 20,
      ),
    });
    const limit = gpuDevice.limits.maxStorageBufferBindingSize;
    const n = 40_000_000;
    assert.ok(
      4 * n > limit,
      `binding limit is ${limit} bytes: no split needed`,
    );
    const seed = testSeed("40M");
    const t0 = performance.now();
    const twin = new Twin({ dtype: "f32", sizes: [n, 1000], seed, gpuDevice });
    try {
      const plan = planOf(twin.gpu);
      const parts = groupsOfTensor(plan, 0);
      console.log(
        `40M tensor: ${parts} batches (binding limit ${limit} B), state ${twin.gpu.stateBytes()} B`,
      );
      assert.ok(
        parts >= 2,
        `expected the 160 MB tensor split, got ${parts} group(s)`,
      );
      for (const g of plan.batches) {
        assert.ok(g.params.size <= limit && g.grads.size <= limit);
      }
      for (let s = 1; s <= 2; s++) {
        const t1 = performance.now();
        const grads = twin.randomGrads();
        const t2 = performance.now();
        twin.write(grads);
        twin.gpu.step();
        await device.queue.onSubmittedWorkDone();
        const t3 = performance.now();
        twin.cpu.step();
        const t4 = performance.now();
        await twin.compare(`seed ${seed}, step ${s}`);
        const t5 = performance.now();
        const sec = (a: number, b: number) => ((b - a) / 1000).toFixed(1);
        console.log(
          `step ${s}: random grads ${sec(t1, t2)} s, GPU ${
            sec(t2, t3)
          } s, CPU ${sec(t3, t4)} s, compare ${sec(t4, t5)} s`,
        );
      }
      twin.report("f32 40M + 1000");
      console.log(
        `40M test: ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
    } finally {
      twin.dispose();
    }
  },
});

for (const dtype of ["f32", "bf16"] as const) {
  Deno.test(`chunked: maxBindingBytes 4096, ${dtype}, odd lengths split into many groups, 10 steps == CPU`, async () => {
    const seed = testSeed(`chunked ${dtype}`);
    const sizes = [5003, 777, 12345, 3, 64, 1, 299, 2001];
    const twin = new Twin({
      dtype,
      sizes,
      seed,
      options: {
        topkBlockSize: 100, // chunks at multiples of lcm(100, 8) = 200
        efBlockSize: 250, // EF blocks straddle chunk and top-k boundaries
        density: 0.05,
        window: 4,
        maxBindingBytes: 4096,
        // Chunked tensors only: the planner test below covers gathering.
        gatherBelow: 300,
      },
    });
    try {
      const plan = planOf(twin.gpu);
      const room = 4096 / twin.bpe;
      sizes.forEach((n, i) => {
        const parts = groupsOfTensor(plan, i);
        if (n * twin.bpe > 4096) {
          assert.ok(
            parts >= Math.ceil(n / room),
            `${twin.names[i]}: ${parts} groups`,
          );
        }
        for (const g of plan.batches) {
          for (const s of g.segments) {
            if (s.tensor === i && s.coordStart > 0) {
              assert.equal(
                s.coordStart % 200,
                0,
                "chunks start on block and word boundaries",
              );
            }
          }
        }
      });
      for (const g of plan.batches) {
        assert.ok(g.params.size <= 4096, `binding of ${g.params.size} B`);
        assert.ok(g.grads.size <= 4096, `binding of ${g.grads.size} B`);
      }
      const gathered = plan.batches.filter((g) => g.gather).length;
      console.log(
        `${dtype}: ${plan.batches.length} batches, ${gathered} gathered`,
      );
      assert.ok(gathered >= 1, "the tensors of <= 300 elements are gathered");
      for (let s = 1; s <= 10; s++) {
        twin.step();
        await twin.compare(`seed ${seed}, step ${s}`);
      }
      twin.report(`chunked ${dtype}`);
    } finally {
      twin.dispose();
    }
  });
}

Deno.test({
  name:
    "planner: a gathered tensor larger than maxBindingBytes is split, not gathered",
  // A batch's first tensor used to skip the binding-room check, so a
  // 5003-element f32 tensor got a 20032-byte arena binding despite
  // maxBindingBytes 4096.
  fn() {
    const mk = (n: number) => ({
      length: n,
      param: device.createBuffer({ size: 4 * n, usage: TENSOR_USAGE }),
      grad: device.createBuffer({ size: 4 * n, usage: TENSOR_USAGE }),
    });
    const tensors = [mk(5003), mk(777)];
    const opt = new MicroAdam(device, tensors, {
      topkBlockSize: 100,
      efBlockSize: 250,
      maxBindingBytes: 4096,
    });
    try {
      for (const g of planOf(opt).batches) {
        assert.ok(g.params.size <= 4096, `binding of ${g.params.size} B`);
      }
    } finally {
      opt.dispose();
      for (const t of tensors) {
        t.param.destroy();
        t.grad.destroy();
      }
    }
  },
});

// ---- 4. Many small tensors; tensors sharing a buffer ---------------------

for (const dtype of ["f32", "bf16"] as const) {
  Deno.test(`gather: 500 tensors of 1..300 elements in their own buffers, ${dtype}, == CPU`, async () => {
    const seed = testSeed(`500 biases ${dtype}`);
    const r = rng(seed ^ 0x5bd1e995);
    const sizes = Array.from({ length: 500 }, () => 1 + Math.floor(r() * 300));
    const twin = new Twin({
      dtype,
      sizes,
      seed,
      options: { density: 0.05, window: 5 },
    });
    try {
      const plan = planOf(twin.gpu);
      console.log(
        `${dtype}: 500 tensors (${
          sizes.reduce((a, b) => a + b)
        } elements) -> ${plan.batches.length} batch(es)`,
      );
      assert.ok(plan.batches.length <= 2, `${plan.batches.length} groups`);
      assert.ok(
        plan.batches.every((g) => g.gather),
        "every group is a gather arena",
      );
      for (let s = 1; s <= 8; s++) {
        twin.step();
        if (s === 1 || s === 8) await twin.compare(`seed ${seed}, step ${s}`);
      }
      twin.report(`500 biases ${dtype}`);
    } finally {
      twin.dispose();
    }
  });

  // With weight decay every parameter word of a block is rewritten, so the
  // half-word after an odd bf16 tensor (a gap here) must be kept by hand:
  // checked with a decay of 5 % a step (lr·wd), which changes the bf16
  // sentinel where 0.001 % would not.
  for (const weightDecay of [0, 5]) {
    Deno.test(`shared buffer: tensors at offsets of one param/grad buffer, ${dtype}, weight decay ${weightDecay}, batched natively, == CPU`, async () => {
      const seed = testSeed(
        weightDecay ? `shared ${dtype} wd` : `shared ${dtype}`,
      );
      const sizes = [37, 1000, 5, 4097, 2, 300, 70001, 1];
      const twin = new Twin({
        dtype,
        sizes,
        seed,
        layout: "shared",
        options: { weightDecay, lr: 1e-2 },
      });
      try {
        const plan = planOf(twin.gpu);
        assert.equal(plan.batches.length, 1, "one batch");
        assert.equal(plan.batches[0].segments.length, sizes.length);
        assert.equal(plan.batches[0].gather, undefined, "not gathered");
        if (dtype === "bf16") {
          assert.ok(twin.gpuTensors.every((t) => (t.offset ?? 0) % 2 === 0));
        }
        for (let s = 1; s <= 10; s++) {
          twin.step();
          if (s === 1 || s === 10) {
            await twin.compare(`seed ${seed}, step ${s}`);
          }
        }
        await twin.assertGapsUntouched(`seed ${seed}`);
        twin.report(`shared ${dtype}, weight decay ${weightDecay}`);
      } finally {
        twin.dispose();
      }
    });
  }
}

// ---- Tensors in buffers of their own sharing dispatches (lanes) ----------

for (const dtype of ["f32", "bf16"] as const) {
  // bf16 batches merge BF16_LANES (2) binding pairs, f32 FAST_LANES (4).
  const perBatch = dtype === "bf16" ? BF16_LANES : FAST_LANES;
  Deno.test(`lanes: 7 tensors in buffers of their own, ${dtype}, two param groups (with and without weight decay), in batches of ${perBatch} lanes, == CPU`, async () => {
    const seed = testSeed(`lanes ${dtype}`);
    const twin = new Twin({
      dtype,
      groups: [
        { sizes: [70001, 9000, 5003, 4097] },
        { sizes: [12000, 8193, 40000], weightDecay: 0.05 },
      ],
      seed,
      options: { gatherBelow: 0, lr: 1e-2 },
    });
    try {
      const lanes = fastLanes(twin.device);
      const plan = planOf(twin.gpu);
      assert.equal(lanes, FAST_LANES, "the test device takes every lane");
      assert.deepEqual(
        plan.batches.map((b) => b.segments.map((s) => s.lane ?? 0)),
        dtype === "bf16"
          ? [[0, 1], [0, 1], [0, 1], [0]]
          : [[0, 1, 2, 3], [0, 1, 2]],
      );
      for (let s = 1; s <= 12; s++) {
        twin.step();
        if (s <= 2 || s === 12) await twin.compare(`seed ${seed}, step ${s}`);
      }
      twin.report(`lanes ${dtype}`);
    } finally {
      twin.dispose();
    }
  });
}
