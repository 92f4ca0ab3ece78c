/**
 * saveTrainingState / loadTrainingState (src/train/training_state.ts)
 * and the version-2 checkpoint format beneath them: parameters and
 * optimizer state of GPU (f32 and bf16 MicroAdam, AdamW) and CPU optimizers
 * round-trip bit for bit in one file; mismatches and corruption throw a
 * CheckpointError and change nothing; the file still loads as an optimizer
 * checkpoint.
 */

import assert from "node:assert/strict";
import {
  Adam,
  AdamCpu,
  AdamW,
  CheckpointError,
  createTensor,
  loadCheckpoint,
  loadTrainingState,
  MicroAdam,
  MicroAdamCpu,
  readTensor,
  saveTrainingState,
  writeTensor,
} from "../mod.ts";
import {
  decodeCheckpointWithExtras,
  encodeCheckpoint,
} from "../src/checkpoint/format.ts";
import { rng, testDevice } from "./gpu_util.ts";

const device = await testDevice();

function random(n: number, r: () => number): Float32Array<ArrayBuffer> {
  return Float32Array.from({ length: n }, () => 2 * r() - 1);
}

async function rejectsCheckpoint(
  p: Promise<unknown>,
  pattern: RegExp,
): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof CheckpointError, `not a CheckpointError: ${e}`);
    assert.match(e.message, pattern);
    return true;
  });
}

async function withDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const dtype of ["f32", "bf16"] as const) {
  Deno.test(`GPU MicroAdam (${dtype}): a saved training state restores parameters and optimizer bit for bit, and the run continues identically`, async () => {
    await withDir(async (dir) => {
      const r = rng(dtype === "f32" ? 31 : 32);
      const sizes = [5000, 37];
      const tensors = sizes.map((n, i) =>
        createTensor(device, random(n, r), { name: `t${i}`, dtype })
      );
      const opt = new MicroAdam(device, tensors, { lr: 1e-2, dtype });
      const grads = Array.from(
        { length: 6 },
        () => sizes.map((n) => random(n, r)),
      );
      const stepWith = (g: Float32Array[]) => {
        tensors.forEach((t, i) => writeTensor(device, t, g[i]));
        opt.step();
      };
      for (let s = 0; s < 3; s++) stepWith(grads[s]);
      const path = `${dir}/run.ckpt`;
      await saveTrainingState(path, {
        params: tensors,
        optimizer: opt,
        meta: { epoch: 2, note: "x", nested: { a: [1, null] } },
      });
      for (let s = 3; s < 6; s++) stepWith(grads[s]);
      const endA = await Promise.all(tensors.map((t) => readTensor(device, t)));
      const stateA = await opt.stateDict();

      // Scramble, restore, replay the same gradients.
      tensors.forEach((t, i) =>
        writeTensor(device, t, random(sizes[i], r), "param")
      );
      const loaded = await loadTrainingState(path, {
        params: tensors,
        optimizer: opt,
      });
      assert.deepEqual(loaded.meta, {
        epoch: 2,
        note: "x",
        nested: { a: [1, null] },
      });
      assert.equal(loaded.step, 3);
      assert.equal(loaded.calls, 3);
      for (let s = 3; s < 6; s++) stepWith(grads[s]);
      const endB = await Promise.all(tensors.map((t) => readTensor(device, t)));
      assert.deepEqual(endB, endA);
      assert.deepEqual(await opt.stateDict(), stateA);

      // The file is also a plain optimizer checkpoint.
      const plain = await loadCheckpoint(path);
      assert.equal(plain.optimizer, "MicroAdam");
      assert.equal(plain.step, 3);
      opt.dispose();
      for (const t of tensors) {
        t.param.destroy();
        t.grad.destroy();
      }
    });
  });
}

Deno.test("mismatches (count, name, length, dtype, optimizer kind) and corruption throw CheckpointError and change nothing", async () => {
  await withDir(async (dir) => {
    const r = rng(33);
    const w = createTensor(device, random(64, r), { name: "w" });
    const b = createTensor(device, random(8, r), { name: "b" });
    const opt = new AdamW(device, [w, b], { lr: 0.1 });
    writeTensor(device, w, random(64, r));
    writeTensor(device, b, random(8, r));
    opt.step();
    const path = `${dir}/a.ckpt`;
    await saveTrainingState(path, { params: [w, b], optimizer: opt });
    writeTensor(device, w, random(64, r));
    opt.step();
    const before = await readTensor(device, w);
    const stateBefore = await opt.stateDict();

    await rejectsCheckpoint(
      loadTrainingState(path, { params: [w], optimizer: opt }),
      /a\.ckpt: holds 2 parameter tensors, 1 were given/,
    );
    await rejectsCheckpoint(
      loadTrainingState(path, { params: [b, w], optimizer: opt }),
      /parameter 0 is "w" in the file, "b" here/,
    );
    const w2 = createTensor(device, 65, { name: "w" });
    await rejectsCheckpoint(
      loadTrainingState(path, { params: [w2, b], optimizer: opt }),
      /parameter "w" has 64 f32 values in the file, 65 f32 here/,
    );
    const wb = createTensor(device, 64, { name: "w", dtype: "bf16" });
    await rejectsCheckpoint(
      loadTrainingState(path, { params: [wb, b], optimizer: opt }),
      /64 f32 values in the file, 64 bf16 here/,
    );
    const other = new MicroAdam(device, [w, b]);
    await rejectsCheckpoint(
      loadTrainingState(path, { params: [w, b], optimizer: other }),
      /a\.ckpt: optimizer mismatch: this is MicroAdam, the state was saved by AdamW/,
    );
    other.dispose();

    const bytes = await Deno.readFile(path);
    bytes[bytes.length - 20] ^= 1; // inside the last parameter's data
    await Deno.writeFile(`${dir}/bad.ckpt`, bytes);
    await rejectsCheckpoint(
      loadTrainingState(`${dir}/bad.ckpt`, { params: [w, b], optimizer: opt }),
      /bad\.ckpt: checkpoint corrupt/,
    );
    await rejectsCheckpoint(
      loadTrainingState(`${dir}/none.ckpt`, { params: [w, b], optimizer: opt }),
      /no checkpoint at .*none\.ckpt/,
    );

    // An optimizer-only checkpoint has no parameters.
    await opt.save(`${dir}/opt.ckpt`);
    await rejectsCheckpoint(
      loadTrainingState(`${dir}/opt.ckpt`, { params: [w, b], optimizer: opt }),
      /holds 0 parameter tensors, 2 were given \(an optimizer-only checkpoint\?\)/,
    );

    assert.deepEqual(await readTensor(device, w), before);
    assert.deepEqual(await opt.stateDict(), stateBefore);
    opt.dispose();
    for (const t of [w, b, w2, wb]) {
      t.param.destroy();
      t.grad.destroy();
    }
  });
});

Deno.test("CPU optimizers: parameters (f32 and bf16 bits) and state round-trip; a CPU file loads into the GPU twin", async () => {
  await withDir(async (dir) => {
    const r = rng(34);
    const w = { name: "w", param: random(300, r), grad: random(300, r) };
    const opt = new AdamCpu([w], { lr: 0.05 });
    opt.step();
    await saveTrainingState(`${dir}/cpu.ckpt`, {
      params: [w],
      optimizer: opt,
      meta: { k: 1 },
    });
    const saved = w.param.slice();
    opt.step();
    const { meta } = await loadTrainingState(`${dir}/cpu.ckpt`, {
      params: [w],
      optimizer: opt,
    });
    assert.deepEqual(meta, { k: 1 });
    assert.deepEqual(w.param, saved);
    assert.equal(opt.status().step, 1);

    const bits = {
      name: "v",
      param: new Uint16Array(50).map((_, i) => 0x3f80 + i),
      grad: new Uint16Array(50).fill(0x3f00),
    };
    const mopt = new MicroAdamCpu([bits], { dtype: "bf16" });
    mopt.step();
    await saveTrainingState(`${dir}/bf16.ckpt`, {
      params: [bits],
      optimizer: mopt,
    });
    const keep = bits.param.slice();
    bits.param.fill(0);
    await loadTrainingState(`${dir}/bf16.ckpt`, {
      params: [bits],
      optimizer: mopt,
    });
    assert.deepEqual(bits.param, keep);

    // The same file into AdamCpu's WebGPU twin, Adam: parameters and state.
    const t = createTensor(device, 300, { name: "w" });
    const gpu = new Adam(device, [t], { lr: 0.05 });
    await loadTrainingState(`${dir}/cpu.ckpt`, { params: [t], optimizer: gpu });
    assert.deepEqual(await readTensor(device, t), saved);
    assert.equal((await gpu.status()).step, 1);
    gpu.dispose();
    t.param.destroy();
    t.grad.destroy();
  });
});

Deno.test("checkpoint format v2: parameters and metadata round-trip; bad parameters and non-JSON metadata are refused", () => {
  const state = {
    optimizer: "Adam",
    config: {},
    step: 1,
    calls: 1,
    skipped: 0,
    ring: 0,
    tensors: [],
  };
  const params = [
    {
      name: "a",
      length: 3,
      dtype: "f32" as const,
      bytes: new Uint8Array(new Float32Array([1, 2, 3]).buffer),
    },
    {
      name: "b",
      length: 3,
      dtype: "bf16" as const,
      bytes: new Uint8Array(6).fill(7),
    },
  ];
  const bytes = encodeCheckpoint(state, { params, meta: { x: 1.5, s: "t" } });
  assert.equal(new DataView(bytes.buffer).getUint32(8, true), 2);
  const back = decodeCheckpointWithExtras(bytes);
  assert.deepEqual(back.params, params);
  assert.deepEqual(back.meta, { x: 1.5, s: "t" });
  assert.deepEqual(back.state, state);
  // Deterministic: the same inputs give the same bytes.
  assert.deepEqual(
    encodeCheckpoint(back.state, { params: back.params, meta: back.meta }),
    bytes,
  );

  assert.throws(
    () => encodeCheckpoint(state, { params: [{ ...params[0], length: 4 }] }),
    /param 0 \("a"\): expected .*length × 4 or × 2 bytes/,
  );
  assert.throws(
    () => encodeCheckpoint(state, { meta: { lr: NaN } }),
    /meta\.lr: expected JSON data .* got NaN/,
  );
  assert.throws(
    () =>
      encodeCheckpoint(state, {
        meta: { when: new Date(0) } as Record<string, unknown>,
      }),
    /meta\.when: expected JSON data .* got object/,
  );
  assert.throws(
    () =>
      encodeCheckpoint(state, {
        meta: [1] as unknown as Record<string, unknown>,
      }),
    /meta: expected JSON data/,
  );
});
