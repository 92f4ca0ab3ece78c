/**
 * The optimizer matrix (tests/optimizers.ts) under faults and misuse: one
 * regression test per class of defect that an attack on the public API
 * found (numbered as in the reliability issue). Each asserts a typed error
 * or results identical to the CPU twin, and that nothing was lost.
 */

import assert from "node:assert/strict";
import {
  Adam,
  AdamCpu,
  AdamW,
  CheckpointError,
  createTensor,
  DisposedError,
  GpuCommandError,
  GpuUnavailableError,
  InvalidOptionError,
  loadCheckpoint,
  MicroAdam,
  MicroAdamCpu,
  NonFiniteGradientError,
  type OptimizerState,
  requestDevice,
  saveCheckpoint,
  StepLimitError,
  TensorMismatchError,
  toBf16Array,
  writeTensor,
} from "../mod.ts";
import {
  all,
  assertStatesEqual,
  checkError,
  device,
  expectError,
  expectReject,
  type Handle,
  make,
  matrix,
  randomData,
  run,
  type Spec,
  tensorsOf,
  withTempDir,
} from "./optimizers.ts";

const LENGTHS = [300, 1000];

function handle(s: Spec, options = {}): Handle {
  return make(s, tensorsOf(randomData(11, LENGTHS)), options);
}

/** A state equal to `s` but for one buffer's bytes. */
function withBuffer(
  s: OptimizerState,
  tensor: number,
  name: string,
  bytes: Uint8Array,
): OptimizerState {
  return {
    ...s,
    tensors: s.tensors.map((t, i) =>
      i === tensor ? { ...t, buffers: { ...t.buffers, [name]: bytes } } : t
    ),
  };
}

// 1. dispose() while a save, status or stateDict is pending.
Deno.test("1: dispose() during a pending save, status or stateDict rejects with DisposedError; the good checkpoint stays", async () => {
  await withTempDir(async (dir) => {
    for (const dtype of ["f32", "bf16"] as const) {
      const t = createTensor(device, new Float32Array(5000).fill(0.5), {
        name: "w",
        dtype,
      });
      const opt = new MicroAdam(device, [t], { dtype, nonFinite: "error" });
      for (let i = 0; i < 3; i++) {
        writeTensor(
          device,
          t,
          new Float32Array(5000).map((_, j) => Math.sin(i + j)),
        );
        opt.step();
      }
      const path = `${dir}/good.ckpt`;
      await opt.save(path);
      const good = await Deno.readFile(path);
      const saving = opt.save(path);
      const status = opt.status();
      const dict = opt.stateDict();
      opt.dispose();
      await assert.rejects(saving, DisposedError);
      await assert.rejects(status, DisposedError);
      await assert.rejects(dict, DisposedError);
      assert.deepEqual(await Deno.readFile(path), good, "checkpoint intact");
      assert.equal((await loadCheckpoint(path)).step, 3);
      t.param.destroy();
      t.grad.destroy();
    }
  });
});

// 2. Options validated as 64-bit numbers but used as f32.
matrix(
  "2: lr, weightDecay, betas, eps that the kernels' f32 cannot hold are InvalidOptionErrors, at construction and at each step",
  all,
  async (s) => {
    for (
      const [o, pattern] of [
        [{ lr: 1e39 }, /lr: 1e\+39 overflows f32/],
        [{ weightDecay: 1e39 }, /weightDecay: 1e\+39 overflows f32/],
        [{ betas: [0.9, 0.999999999] }, /betas\[1\]: 0\.999999999 rounds to 1/],
        [{ eps: 0 }, /eps: expected a finite number > 0, got 0/],
      ] as const
    ) {
      expectError(() => handle(s, o), InvalidOptionError, pattern);
    }
    const h = handle(s, { lr: 1e-2 });
    try {
      run(h, 3, 2);
      const before = await h.stateDict();
      const params = await h.params();
      h.paramGroups[0].lr = 1e39;
      expectError(
        () => h.step(),
        InvalidOptionError,
        /group 0 lr: 1e\+39 overflows f32/,
      );
      h.paramGroups[0].lr = 1e-2;
      h.paramGroups[0].schedule = () => 1e42;
      expectError(() => h.step(), InvalidOptionError, /overflows f32/);
      h.paramGroups[0].schedule = () => 2n as unknown as number;
      expectError(
        () => h.step(),
        InvalidOptionError,
        /schedule 2n\): expected a finite schedule factor >= 0, got 2n/,
      );
      assertStatesEqual(await h.stateDict(), before, "state untouched");
      assert.deepEqual(await h.params(), params);
    } finally {
      h.close();
    }
  },
);

// 3. A step the GPU rejected must not be a quiet no-op.
Deno.test("3: steps the GPU refused (a destroyed or mapped buffer, a finished encoder, bad timestampWrites, an encoder never submitted) raise errors", async () => {
  const t = createTensor(device, new Float32Array(1024).fill(1), { name: "w" });
  const opt = new Adam(device, [t], { lr: 0.1 });
  writeTensor(device, t, new Float32Array(1024).fill(0.5));
  opt.step();
  assert.equal((await opt.status()).step, 1);

  // A finished encoder: refused while encoding.
  const finished = device.createCommandEncoder();
  finished.finish();
  opt.step({ encoder: finished });
  await expectReject(
    () => opt.status(),
    GpuCommandError,
    /step call 2 did not run/,
  );
  assert.deepEqual(await opt.status(), { step: 1, calls: 2, skipped: 0 });
  // Reported by the next step() as well, once the GPU has answered.
  opt.step({ encoder: finished });
  await new Promise((r) => setTimeout(r, 50));
  expectError(() => opt.step(), GpuCommandError, /step call 3 did not run/);
  assert.deepEqual(await opt.status(), { step: 1, calls: 3, skipped: 0 });

  // Timestamp writes into a query set the step cannot use.
  if (device.features.has("timestamp-query")) {
    const qs = device.createQuerySet({ type: "timestamp", count: 2 });
    opt.step({
      timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 7 },
    });
    await expectReject(() => opt.status(), GpuCommandError, /did not run/);
    qs.destroy();
  }

  // An encoder passed to step() and never submitted.
  opt.step({ encoder: device.createCommandEncoder() });
  await expectReject(
    () => opt.status(),
    GpuCommandError,
    /1 step call\(s\) never ran on the GPU/,
  );

  // A destroyed parameter buffer.
  const before = (await opt.status()).step;
  t.param.destroy();
  opt.step();
  await expectReject(() => opt.status(), GpuCommandError, /did not run/);
  assert.equal((await opt.status()).step, before);
  opt.dispose();
  t.grad.destroy();
});

Deno.test("3: a mapped tensor buffer is a TensorMismatchError at step(), nothing encoded", async () => {
  const param = device.createBuffer({
    size: 64,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
      GPUBufferUsage.COPY_DST,
  });
  // STORAGE buffers cannot have MAP_* usage: the mapped case is a buffer
  // mapped at creation and not yet unmapped.
  const g2 = device.createBuffer({
    size: 64,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
    mappedAtCreation: true,
  });
  const opt = new Adam(device, [{ name: "w", param, grad: g2, length: 16 }]);
  expectError(
    () => opt.step(),
    TensorMismatchError,
    /tensor 0 \("w"\): its grad buffer is mapped; unmap it before step\(\)/,
  );
  g2.unmap();
  opt.step();
  assert.equal((await opt.status()).step, 1);
  opt.dispose();
  param.destroy();
  g2.destroy();
});

Deno.test({
  name:
    "3: tensors of another GPUDevice: every call throws GpuCommandError naming the cause",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const other = await requestDevice();
    try {
      const t = createTensor(other, 16);
      const opt = new MicroAdam(device, [t]);
      await expectReject(
        () => opt.status(),
        GpuCommandError,
        /refused the optimizer's buffers/,
      );
      expectError(() => opt.step(), GpuCommandError);
      opt.dispose();
    } finally {
      other.destroy();
    }
  },
});

// 4. The step counter at the edge of u32.
matrix(
  "4: counters past 2^32 - 1 are refused (load and step), CPU and GPU alike; the last steps stay finite and agree",
  all,
  async (s) => {
    const h = handle(s, { lr: 1e-3 });
    const m = s.family === "MicroAdam" ? 10 : 1;
    try {
      // m steps, so that every window row is written: a state whose step
      // count puts rows in use must hold them (checkMicroAdamState).
      run(h, 5, m);
      const st = await h.stateDict();
      const edge = 2 ** 32 - 1;
      for (const k of ["step", "calls", "skipped"] as const) {
        const bad = { ...st, [k]: 2 ** 32, calls: 2 ** 32 + 1 };
        expectError(
          () => h.loadStateDict(bad),
          CheckpointError,
          /counts up to 4294967295/,
        );
      }
      const near = {
        ...st,
        step: edge - 1,
        calls: edge - 1,
        skipped: 0,
        ring: s.family === "MicroAdam" ? (edge - 1) % m : 0,
      };
      h.loadStateDict(near);
      run(h, 5, 1, 1);
      const p = await h.params();
      assert.ok(
        p.every((x) => x.every(Number.isFinite)),
        "finite at t = 2^32 - 1",
      );
      assert.equal((await h.status()).step, edge);
      expectError(() => h.step(), StepLimitError, /4294967295 step calls/);
    } finally {
      h.close();
    }
  },
);

// 6. More steps encoded before one submit than the ring has slots.
Deno.test("6: a 65th step into one encoder is a StepLimitError; 65 encoders submitted at once refuse the overwritten step and say so", async () => {
  const t = createTensor(device, new Float32Array(256).fill(1), { name: "w" });
  const opt = new Adam(device, [t], { lr: 0.01 });
  writeTensor(device, t, new Float32Array(256).fill(1));
  const enc = device.createCommandEncoder();
  for (let i = 0; i < 64; i++) opt.step({ encoder: enc });
  expectError(
    () => opt.step({ encoder: enc }),
    StepLimitError,
    /64 steps are already encoded into this encoder/,
  );
  device.queue.submit([enc.finish()]);
  assert.equal((await opt.status()).step, 64);

  const encoders = Array.from(
    { length: 65 },
    () => device.createCommandEncoder(),
  );
  for (const e of encoders) opt.step({ encoder: e });
  device.queue.submit(encoders.map((e) => e.finish()));
  await expectReject(
    () => opt.status(),
    StepLimitError,
    /1 step call\(s\) were refused/,
  );
  const st = await opt.status();
  assert.equal(st.step, 64 + 64, "the refused step was not applied");
  assert.equal(st.calls, 129);
  opt.dispose();
  t.param.destroy();
  t.grad.destroy();
});

// 7. Integer options beyond what the kernels hold.
Deno.test("7: efBlockSize 2^32 and other unrepresentable integers are InvalidOptionErrors at construction", () => {
  const t = createTensor(device, 64);
  for (
    const o of [{ efBlockSize: 2 ** 32 }, { window: 65536 }, {
      topkBlockSize: 65537,
    }]
  ) {
    expectError(() => new MicroAdam(device, [t], o), InvalidOptionError);
    expectError(
      () =>
        new MicroAdamCpu([{
          param: new Float32Array(64),
          grad: new Float32Array(64),
        }], o),
      InvalidOptionError,
    );
  }
  t.param.destroy();
  t.grad.destroy();
});

// 8. Checkpoints match tensors by name.
matrix(
  "8: a checkpoint loads by tensor name ([a, b] into [b, a]); a name missing is a CheckpointError naming both lists",
  all,
  async (s) => {
    const data = randomData(21, [300, 300]);
    const src = make(s, [{ name: "a", data: data[0] }, {
      name: "b",
      data: data[1],
    }]);
    const dst = make(s, [{ name: "b", data: data[1] }, {
      name: "a",
      data: data[0],
    }]);
    const odd = make(s, [{ name: "a", data: data[0] }, {
      name: "c",
      data: data[1],
    }]);
    try {
      run(src, 4, 3);
      const st = await src.stateDict();
      dst.loadStateDict(st);
      const got = await dst.stateDict();
      assert.deepEqual(got.tensors.map((t) => t.name), ["b", "a"]);
      assert.deepEqual(got.tensors[0].buffers, st.tensors[1].buffers);
      assert.deepEqual(got.tensors[1].buffers, st.tensors[0].buffers);
      const before = await odd.stateDict();
      expectError(
        () => odd.loadStateDict(st),
        CheckpointError,
        /tensor 1 "c" is not in the state \(this optimizer has \["a", "c"\], the state has \["a", "b"\]\)/,
      );
      assertStatesEqual(await odd.stateDict(), before, "untouched");
    } finally {
      src.close();
      dst.close();
      odd.close();
    }
  },
);

// 9. Values the algorithm forbids, behind a valid checksum.
matrix(
  "9: a checkpoint with NaN, Infinity or negative values where forbidden is a CheckpointError; the state is untouched",
  all,
  async (s) => {
    const h = handle(s);
    try {
      run(h, 6, 3);
      const st = await h.stateDict();
      const before = await h.stateDict();
      const poison: [string, number, number][] = [];
      const bufs = st.tensors[1].buffers;
      if ("expAvg" in bufs) poison.push(["expAvg", 7, NaN]);
      if ("expAvgSq" in bufs) {
        poison.push(["expAvgSq", 3, -1], [
          "expAvgSq",
          4,
          Infinity,
        ]);
      }
      if ("maxExpAvgSq" in bufs) poison.push(["maxExpAvgSq", 0, NaN]);
      if ("window" in bufs) poison.push(["window", 2, NaN]);
      if ("stats" in bufs && s.family === "MicroAdam") {
        poison.push([
          "stats",
          0,
          NaN,
        ]);
      }
      assert.ok(poison.length > 0);
      for (const [name, at, value] of poison) {
        const bytes = bufs[name].slice();
        const view = new DataView(bytes.buffer);
        if (name === "window" || name === "stats") {
          // bf16 NaN in the value (window) or the max (stats) half.
          view.setUint16(4 * at + 2, value !== value ? 0x7fc0 : 0x7f80, true);
        } else {
          view.setFloat32(4 * at, value, true);
        }
        expectError(
          () => h.loadStateDict(withBuffer(st, 1, name, bytes)),
          CheckpointError,
          /tensor 1 \("t1"\)/,
        );
      }
      // min > max in an EF range.
      if (s.family === "MicroAdam") {
        const bytes = bufs.stats.slice();
        new DataView(bytes.buffer).setUint32(0, 0x3f80 | (0xbf80 << 16), true);
        expectError(
          () => h.loadStateDict(withBuffer(st, 1, "stats", bytes)),
          CheckpointError,
          /min 1 and max -1/,
        );
      }
      assertStatesEqual(await h.stateDict(), before, "untouched");
    } finally {
      h.close();
    }
  },
);

// 10 and 12. All or nothing, any ArrayBufferView by its bytes.
matrix(
  "10, 12: loadStateDict takes any ArrayBufferView by its bytes (split tensors too) and writes nothing when any tensor is bad",
  all,
  async (s) => {
    const opts = s.backend === "gpu" && s.family === "MicroAdam"
      ? { maxBindingBytes: 4096, topkBlockSize: 256 }
      : {};
    const h = make(s, tensorsOf(randomData(31, [5000, 3000])), opts);
    try {
      run(h, 8, 4);
      const st = await h.stateDict();
      const views: ((b: Uint8Array) => ArrayBufferView)[] = [
        (b) => new DataView(b.buffer, b.byteOffset, b.byteLength),
        (b) => new Uint16Array(b.slice().buffer),
        (b) => new Float32Array(b.slice().buffer),
        (b) => new Uint8Array([0, 0, 0, ...b]).subarray(3),
      ];
      for (const view of views) {
        const other = {
          ...st,
          tensors: st.tensors.map((t) => ({
            ...t,
            buffers: Object.fromEntries(
              Object.entries(t.buffers).map(([k, b]) => [k, view(b)]),
            ),
          })),
        } as unknown as OptimizerState;
        h.loadStateDict(other);
        assertStatesEqual(
          await h.stateDict(),
          st,
          `loaded through ${view(new Uint8Array(4)).constructor.name}`,
        );
      }
      // Tensor 1 damaged: tensor 0 must not be written either.
      run(h, 9, 1);
      const now = await h.stateDict();
      const bad = withBuffer(
        st,
        1,
        Object.keys(st.tensors[1].buffers)[0],
        new Uint8Array(3),
      );
      expectError(() => h.loadStateDict(bad), CheckpointError);
      assertStatesEqual(await h.stateDict(), now, "nothing written");
    } finally {
      h.close();
    }
  },
);

// 11. No background promise may reject unhandled.
Deno.test({
  name:
    '11: nonFinite "error", then dispose() or device.destroy() right after step(): no unhandled rejection',
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const own = await requestDevice();
    for (const end of ["dispose", "destroy"] as const) {
      const dev = end === "destroy" ? await requestDevice() : own;
      const t = createTensor(dev, new Float32Array(4096).fill(1));
      const opt = new MicroAdam(dev, [t], { nonFinite: "error" });
      writeTensor(dev, t, new Float32Array(4096).fill(NaN));
      opt.step();
      if (end === "dispose") opt.dispose();
      else dev.destroy();
      await new Promise((r) => setTimeout(r, 100));
      if (end === "destroy") {
        expectError(() => opt.step(), GpuUnavailableError, /lost/);
        await expectReject(() => opt.status(), GpuUnavailableError);
      } else {
        expectError(() => opt.step(), DisposedError);
      }
    }
    own.destroy();
  },
});

// 13. Bounded resources with step({ encoder }) and policy "error".
Deno.test('13: step({ encoder }) with nonFinite "error" allocates no buffer per step, and step() reports a skip within a few steps', async () => {
  const t = createTensor(device, new Float32Array(512).fill(1), { name: "w" });
  const opt = new MicroAdam(device, [t], { nonFinite: "error" });
  let created = 0;
  const original = device.createBuffer;
  device.createBuffer = function (d: GPUBufferDescriptor) {
    if (!(d.usage & GPUBufferUsage.MAP_READ) || d.label !== "readback") {
      created++;
    }
    return original.call(device, d);
  };
  try {
    for (let i = 0; i < 200; i++) {
      const enc = device.createCommandEncoder();
      writeTensor(device, t, new Float32Array(512).fill(0.1));
      opt.step({ encoder: enc });
      device.queue.submit([enc.finish()]);
    }
    assert.equal(created, 0, "buffers created by 200 steps");
  } finally {
    device.createBuffer = original;
  }
  writeTensor(device, t, new Float32Array(512).fill(NaN));
  const enc = device.createCommandEncoder();
  opt.step({ encoder: enc });
  device.queue.submit([enc.finish()]);
  let thrown: unknown;
  for (let i = 0; i < 20 && !thrown; i++) {
    await new Promise((r) => setTimeout(r, 25));
    writeTensor(device, t, new Float32Array(512).fill(0.1));
    const e = device.createCommandEncoder();
    try {
      opt.step({ encoder: e });
      device.queue.submit([e.finish()]);
    } catch (err) {
      thrown = err;
    }
  }
  const e = checkError(thrown, NonFiniteGradientError, [
    /tensor "w" at step call 201/,
  ]);
  assert.equal((e as NonFiniteGradientError).call, 201);
  opt.dispose();
  t.param.destroy();
  t.grad.destroy();
});

// 14. A disposed optimizer is garbage.
Deno.test("14: create/step/dispose cycles on one device run in flat memory", async () => {
  const probe = new URL("./fixtures/leak_probe.ts", import.meta.url);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--expose-gc", probe.pathname, "400"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const { perCycle } = JSON.parse(text.trim().split("\n").pop()!);
  console.log(
    `heap growth per create/step/dispose cycle: ${perCycle.toFixed(0)} bytes`,
  );
  assert.ok(perCycle < 2000, `${perCycle} bytes retained per cycle`);
});

// 15. Unknown names, null, non-objects, strings for booleans.
Deno.test('15: unknown option keys (with a suggestion), null, non-object options and "false" are InvalidOptionErrors, for every optimizer', () => {
  const t = createTensor(device, 64);
  const cpu =
    () => [{ param: new Float32Array(64), grad: new Float32Array(64) }];
  const makers: [string, (o: unknown) => unknown][] = [
    ["MicroAdam", (o) => new MicroAdam(device, [t], o as never).dispose()],
    ["Adam", (o) => new Adam(device, [t], o as never).dispose()],
    ["AdamW", (o) => new AdamW(device, [t], o as never).dispose()],
    ["MicroAdamCpu", (o) => new MicroAdamCpu(cpu(), o as never)],
    ["AdamCpu", (o) => new AdamCpu(cpu(), o as never)],
  ];
  for (const [name, f] of makers) {
    expectError(
      () => f({ weight_decay: 0.1 }),
      InvalidOptionError,
      /unknown option "weight_decay" \(did you mean "weightDecay"\?\)/,
    );
    expectError(
      () => f({ lR: 0.1 }),
      InvalidOptionError,
      /unknown option "lR" \(did you mean "lr"\?\)/,
    );
    expectError(() => f({ lr: null }), InvalidOptionError, /lr: got null/);
    expectError(
      () => f(7),
      InvalidOptionError,
      /expected an options object, got 7/,
    );
    if (name.startsWith("MicroAdam")) {
      expectError(
        () => f({ amsgrad: true }),
        InvalidOptionError,
        /unknown option "amsgrad"/,
      );
    } else {
      expectError(
        () => f({ amsgrad: "false" }),
        InvalidOptionError,
        /amsgrad: expected true or false, got "false"/,
      );
      expectError(
        () => f({ dtype: "bf16" }),
        InvalidOptionError,
        /unknown option "dtype"/,
      );
    }
  }
  expectError(
    () => new Adam(device, [{ params: [t], weight_decay: 0 } as never]),
    InvalidOptionError,
    /group 0: unknown option "weight_decay" \(did you mean "weightDecay"\?\)/,
  );
  t.param.destroy();
  t.grad.destroy();
});

// 16. Typed errors where a raw one came.
Deno.test("16: typed errors — a directory or a symlink loop as a checkpoint, use after dispose, a non-string name, after device.destroy()", async () => {
  await withTempDir(async (dir) => {
    const cpu = new AdamCpu([{
      param: new Float32Array(4),
      grad: new Float32Array(4),
    }]);
    await expectReject(
      () => cpu.load(dir),
      CheckpointError,
      /is not a checkpoint file \(it is a directory\)/,
    );
    await expectReject(() => loadCheckpoint(dir), CheckpointError);
    await Deno.symlink(`${dir}/loop2`, `${dir}/loop1`);
    await Deno.symlink(`${dir}/loop1`, `${dir}/loop2`);
    await expectReject(
      () => cpu.load(`${dir}/loop1`),
      CheckpointError,
      /cannot read the checkpoint/,
    );
    await expectReject(
      () => saveCheckpoint(dir, cpu.stateDict()),
      CheckpointError,
      /could not save/,
    );
    cpu.dispose();
    expectError(() => cpu.step(), DisposedError);
    expectError(() => cpu.stateDict(), DisposedError);
  });
  const t = createTensor(device, 8);
  const opt = new Adam(device, [t]);
  opt.dispose();
  expectError(() => opt.step(), DisposedError);
  await expectReject(() => opt.status(), DisposedError);
  await expectReject(() => opt.stateDict(), DisposedError);
  expectError(() => opt.stateBytes(), DisposedError);
  expectError(
    () => new Adam(device, [{ ...t, name: 5 as unknown as string }]),
    TensorMismatchError,
    /tensor 0: name must be a string, got 5/,
  );
  expectError(
    () =>
      new AdamCpu([{
        name: {} as string,
        param: new Float32Array(2),
        grad: new Float32Array(2),
      }]),
    TensorMismatchError,
    /tensor 0: name must be a string/,
  );
  expectError(
    () => new MicroAdamCpu([{ param: t.param, grad: t.grad } as never]),
    TensorMismatchError,
    /param should be a Float32Array for dtype "f32", got a GPUBuffer \(a CPU optimizer works on host arrays; for GPU buffers use the WebGPU MicroAdam\)/,
  );
  t.param.destroy();
  t.grad.destroy();

  const dev = await requestDevice();
  const t2 = createTensor(dev, 8);
  const opt2 = new Adam(dev, [t2]);
  dev.destroy();
  await expectReject(() => opt2.status(), GpuUnavailableError, /lost/);
  await dev.lost;
  expectError(() => new Adam(dev, [t2]), GpuUnavailableError, /lost/);
  expectError(() => opt2.step(), GpuUnavailableError, /lost/);
});

// 17. kill -9 during a save.
Deno.test("17: a save removes the temp files that killed saves to the same path left behind, and only those", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/opt.ckpt`;
    const cpu = new AdamCpu([{
      param: new Float32Array(4),
      grad: new Float32Array(4),
    }]);
    const stale = [
      `${path}.tmp-999999999-abcdef`, // a process that no longer runs
      `${path}.tmp-${Deno.pid}-123456`, // this process, not saving
    ];
    const kept = [
      `${path}.tmp-1-abcdef`, // a live process (pid 1), recent
      `${dir}/other.ckpt.tmp-999999999-abcdef`, // another checkpoint's
    ];
    for (const f of [...stale, ...kept]) {
      await Deno.writeFile(f, new Uint8Array(10));
    }
    await cpu.save(path);
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(`${dir}/${e.name}`);
    for (const f of stale) assert.ok(!names.includes(f), `${f} removed`);
    for (const f of kept) assert.ok(names.includes(f), `${f} kept`);
    assert.equal((await loadCheckpoint(path)).optimizer, "Adam");
  });
});

Deno.test("step options and groups replaced by garbage are typed errors; an encoder submitted after status() said it never ran is forgiven", async () => {
  const t = createTensor(device, 64);
  const opt = new Adam(device, [t]);
  expectError(
    () => opt.step(null as never),
    InvalidOptionError,
    /step options: expected an options object, got null/,
  );
  expectError(
    () => opt.step({ encodr: 1 } as never),
    InvalidOptionError,
    /unknown option "encodr" \(did you mean "encoder"\?\)/,
  );
  expectError(
    () => opt.step({ encoder: {} } as never),
    InvalidOptionError,
    /encoder: expected a GPUCommandEncoder/,
  );
  const late = device.createCommandEncoder();
  opt.step({ encoder: late });
  await expectReject(() => opt.status(), GpuCommandError, /never ran/);
  device.queue.submit([late.finish()]);
  assert.deepEqual(await opt.status(), { step: 1, calls: 1, skipped: 0 });
  (opt.paramGroups as unknown[])[0] = null;
  expectError(
    () => opt.step(),
    TensorMismatchError,
    /group 0: expected a param group/,
  );
  opt.dispose();
  const cpu = new AdamCpu([{
    param: new Float32Array(2),
    grad: new Float32Array(2),
  }]);
  (cpu.paramGroups as unknown[])[0] = 5;
  expectError(
    () => cpu.step(),
    TensorMismatchError,
    /group 0: expected a param group/,
  );
  t.param.destroy();
  t.grad.destroy();
});

Deno.test("3: after a step the GPU refused, MicroAdam's state (double-buffered codes included) still equals its CPU twin's", async () => {
  for (const dtype of ["f32", "bf16"] as const) {
    const n = 9000;
    const init = new Float32Array(n).map((_, i) => Math.sin(i));
    const t = createTensor(device, init, { name: "w", dtype });
    const gpu = new MicroAdam(device, [t], { dtype, lr: 0.01 });
    const param = dtype === "bf16" ? toBf16Array(init) : init.slice();
    const grad = dtype === "bf16" ? new Uint16Array(n) : new Float32Array(n);
    const cpu = new MicroAdamCpu([{ name: "w", param, grad }], {
      dtype,
      lr: 0.01,
    });
    const stepBoth = (k: number) => {
      const g = new Float32Array(n).map((_, i) => Math.cos(i * k + 1));
      writeTensor(device, t, g);
      grad.set(dtype === "bf16" ? toBf16Array(g) : g);
      gpu.step();
      cpu.step();
    };
    stepBoth(1);
    const finished = device.createCommandEncoder();
    finished.finish();
    gpu.step({ encoder: finished }); // refused: never runs
    await expectReject(() => gpu.status(), GpuCommandError);
    for (let k = 2; k <= 4; k++) stepBoth(k);
    const g = await gpu.stateDict();
    const c = cpu.stateDict();
    assert.equal(g.step, c.step);
    assert.deepEqual(
      g.tensors,
      c.tensors,
      `${dtype}: state after a refused step`,
    );
    gpu.dispose();
    t.param.destroy();
    t.grad.destroy();
  }
});
