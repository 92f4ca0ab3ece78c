/**
 * The optimizers of the test matrix and one adapter over both backends, in
 * the manner of PyTorch's `common_optimizers.py`: every WebGPU optimizer
 * (MicroAdam f32 and bf16, Adam, AdamW, AMSGrad) and every CPU one
 * (MicroAdamCpu f32 and bf16, AdamCpu, AdamWCpu, AMSGradCpu,
 * MicroAdamTheoryCpu) behind {@link Handle}, plus the seeded data and the
 * comparisons the `optimizers_*_test.ts` files share.
 */

import assert from "node:assert/strict";
import {
  Adam,
  AdamCpu,
  type AdamOptions,
  AdamW,
  AdamWCpu,
  AMSGrad,
  AMSGradCpu,
  type CpuTensor,
  fromBf16Array,
  type GpuTensor,
  loadCheckpoint,
  MicroAdam,
  MicroAdamCpu,
  type MicroAdamOptions,
  MicroAdamTheoryCpu,
  type OptimizerState,
  type OptimizerStatus,
  type ParamGroupSpec,
  saveCheckpoint,
  type Schedule,
  toBf16Array,
} from "../mod.ts";
import {
  bufferFrom,
  readBf16,
  readF32,
  rng,
  TENSOR_USAGE,
  testDevice,
  writeTo,
} from "./gpu_util.ts";

export const device = await testDevice();

// ---------------------------------------------------------------------------
// The optimizers of the matrix.

export type Family =
  | "MicroAdam"
  | "Adam"
  | "AdamW"
  | "AMSGrad"
  | "MicroAdamTheory";
export type Backend = "gpu" | "cpu";
export type DType = "f32" | "bf16";

export interface Spec {
  /** Shown in test names. */
  id: string;
  family: Family;
  backend: Backend;
  dtype: DType;
  /** Learning rate tuned for the quadratic of the convergence case. */
  lr: number;
}

export const LR = { micro: 0.12, adam: 0.05, theory: 0.02 };

export function spec(
  family: Family,
  backend: Backend,
  dtype: DType = "f32",
): Spec {
  const kind = family === "MicroAdam" ? `MicroAdam ${dtype}` : family;
  const lr = family === "MicroAdam"
    ? LR.micro
    : family === "MicroAdamTheory"
    ? LR.theory
    : LR.adam;
  return {
    id: `${kind} (${backend.toUpperCase()})`,
    family,
    backend,
    dtype,
    lr,
  };
}

export const SPECS: Spec[] = [
  spec("MicroAdam", "gpu", "f32"),
  spec("MicroAdam", "gpu", "bf16"),
  spec("Adam", "gpu"),
  spec("AdamW", "gpu"),
  spec("AMSGrad", "gpu"),
  spec("MicroAdam", "cpu", "f32"),
  spec("MicroAdam", "cpu", "bf16"),
  spec("Adam", "cpu"),
  spec("AdamW", "cpu"),
  spec("AMSGrad", "cpu"),
  spec("MicroAdamTheory", "cpu"),
];

export const isMicro = (s: Spec) => s.family === "MicroAdam";
export const all = () => true;

/** Registers `fn` once per spec it applies to. */
export function matrix(
  name: string,
  applies: (s: Spec) => boolean,
  fn: (s: Spec) => void | Promise<void>,
): void {
  for (const s of SPECS) {
    if (!applies(s)) continue;
    Deno.test(`${name} [${s.id}]`, () => fn(s));
  }
}

// ---------------------------------------------------------------------------
// The adapter: one interface over both backends.

/**
 * Options of any optimizer of the matrix. `nonFinite` is the Adam family's,
 * `"unchecked"` included: MicroAdam's type leaves it out, but the matrix
 * hands it over anyway to see it refused at run time.
 */
export type AnyOptions = Omit<MicroAdamOptions, "nonFinite"> & AdamOptions;

export interface TensorInit {
  name?: string;
  data: Float32Array;
}

export interface GroupInit {
  params: TensorInit[];
  lr?: number;
  weightDecay?: number;
  schedule?: Schedule;
}

export type CpuOpt =
  | MicroAdamCpu
  | AdamCpu
  | AdamWCpu
  | AMSGradCpu
  | MicroAdamTheoryCpu;
export type GpuOpt = MicroAdam | Adam | AdamW | AMSGrad;

/** One optimizer with its tensors, whatever the backend. */
export interface Handle {
  readonly spec: Spec;
  readonly opt: CpuOpt | GpuOpt;
  readonly lengths: number[];
  readonly paramGroups: {
    lr: number;
    weightDecay: number;
    schedule?: Schedule;
  }[];
  /** Writes the gradients (f32 values; rounded to bf16 for bf16 tensors). */
  setGrads(grads: Float32Array[]): void;
  step(): void;
  /**
   * A step with the caller's found-inf flag `bits` (GPU: a u32 word read by
   * the kernels at byte 12 of a buffer of 16; CPU: `foundInf` is whether a
   * bit but the sign's is set, as the GPU reads the word).
   */
  stepFlagged(bits: number): void;
  /** Current parameters as f32 (bf16 widened exactly). */
  params(): Promise<Float32Array[]>;
  status(): Promise<OptimizerStatus>;
  stateDict(): Promise<OptimizerState>;
  loadStateDict(s: OptimizerState): void;
  save(path: string): Promise<void>;
  load(path: string): Promise<void>;
  /** Disposes the optimizer and frees the test's own buffers. */
  close(): void;
}

export function isGroups(p: TensorInit[] | GroupInit[]): p is GroupInit[] {
  return p.length > 0 && "params" in p[0];
}

export function encode(
  s: Spec,
  data: Float32Array,
): Float32Array | Uint16Array {
  return s.dtype === "bf16" ? toBf16Array(data) : data.slice();
}

export function newCpu(
  s: Spec,
  params: (CpuTensor | ParamGroupSpec<CpuTensor>)[],
  o: AnyOptions,
): CpuOpt {
  switch (s.family) {
    case "MicroAdam":
      return new MicroAdamCpu(
        params,
        { dtype: s.dtype, ...o } as MicroAdamOptions,
      );
    case "Adam":
      return new AdamCpu(params, o);
    case "AdamW":
      return new AdamWCpu(params, o);
    case "AMSGrad":
      return new AMSGradCpu(params, o);
    case "MicroAdamTheory":
      return new MicroAdamTheoryCpu(params, o as MicroAdamOptions);
  }
}

export function newGpu(
  s: Spec,
  params: (GpuTensor | ParamGroupSpec<GpuTensor>)[],
  o: AnyOptions & { maxBindingBytes?: number; gatherBelow?: number },
): GpuOpt {
  switch (s.family) {
    case "MicroAdam":
      return new MicroAdam(
        device,
        params,
        { dtype: s.dtype, ...o } as MicroAdamOptions,
      );
    case "Adam":
      return new Adam(device, params, o);
    case "AdamW":
      return new AdamW(device, params, o);
    case "AMSGrad":
      return new AMSGrad(device, params, o);
    case "MicroAdamTheory":
      throw new Error("MicroAdamTheory has no GPU implementation");
  }
}

/** Builds `s` over tensors holding `init`'s data (flat list or groups). */
export function make(
  s: Spec,
  init: TensorInit[] | GroupInit[],
  options: AnyOptions = {},
): Handle {
  const grouped = isGroups(init);
  const groups: GroupInit[] = grouped ? init : [{ params: init }];
  const lengths = groups.flatMap((g) => g.params.map((t) => t.data.length));
  const wrap = <T>(tensors: T[][]) =>
    grouped
      ? groups.map((g, i) => ({
        params: tensors[i],
        lr: g.lr,
        weightDecay: g.weightDecay,
        schedule: g.schedule,
      }))
      : tensors[0];
  if (s.backend === "cpu") {
    const tensors = groups.map((g) =>
      g.params.map((t): CpuTensor => ({
        name: t.name,
        param: encode(s, t.data),
        grad: encode(s, new Float32Array(t.data.length)),
      }))
    );
    const flat = tensors.flat();
    const opt = newCpu(s, wrap(tensors), options);
    const bf16 = s.dtype === "bf16";
    return {
      spec: s,
      opt,
      lengths,
      paramGroups: opt.paramGroups,
      setGrads(grads) {
        grads.forEach((g, i) => flat[i].grad.set(bf16 ? toBf16Array(g) : g));
      },
      step() {
        opt.step();
      },
      stepFlagged(bits) {
        opt.step({ foundInf: (bits & 0x7fffffff) !== 0 });
      },
      params() {
        return Promise.resolve(
          flat.map((t) =>
            bf16
              ? fromBf16Array(t.param as Uint16Array)
              : (t.param as Float32Array).slice()
          ),
        );
      },
      status: () => Promise.resolve(opt.status()),
      stateDict: () => Promise.resolve(opt.stateDict()),
      loadStateDict: (st) => opt.loadStateDict(st),
      // CpuOptimizer has no save()/load() (GpuOptimizer does): use the
      // checkpoint functions, or the methods once they exist.
      async save(path) {
        const m = opt as unknown as { save?: (p: string) => Promise<void> };
        if (typeof m.save === "function") return await m.save(path);
        await saveCheckpoint(path, opt.stateDict());
      },
      async load(path) {
        const m = opt as unknown as { load?: (p: string) => Promise<void> };
        if (typeof m.load === "function") return await m.load(path);
        opt.loadStateDict(await loadCheckpoint(path));
      },
      close: () => opt.dispose(),
    };
  }
  const buffers: GPUBuffer[] = [];
  const tensors = groups.map((g) =>
    g.params.map((t): GpuTensor => {
      const param = bufferFrom(device, encode(s, t.data));
      const grad = bufferFrom(
        device,
        encode(s, new Float32Array(t.data.length)),
      );
      buffers.push(param, grad);
      return { name: t.name, param, grad, length: t.data.length };
    })
  );
  const flat = tensors.flat();
  let opt: GpuOpt;
  try {
    opt = newGpu(s, wrap(tensors), options);
  } catch (e) {
    for (const b of buffers) b.destroy();
    throw e;
  }
  const bf16 = s.dtype === "bf16";
  let flag: GPUBuffer | undefined;
  return {
    spec: s,
    opt,
    lengths,
    paramGroups: opt.paramGroups,
    setGrads(grads) {
      grads.forEach((g, i) =>
        writeTo(device, flat[i].grad, bf16 ? toBf16Array(g) : g)
      );
    },
    step() {
      opt.step();
    },
    stepFlagged(bits) {
      if (!flag) {
        flag = device.createBuffer({ size: 16, usage: TENSOR_USAGE });
        buffers.push(flag);
      }
      writeTo(device, flag, new Uint32Array([bits]), 3);
      opt.step({ foundInf: { buffer: flag, offset: 12 } });
    },
    params() {
      return Promise.all(
        flat.map(async (t) =>
          bf16
            ? fromBf16Array(await readBf16(device, t.param, t.length))
            : (await readF32(device, t.param, t.length)).slice()
        ),
      );
    },
    status: () => opt.status(),
    stateDict: () => opt.stateDict(),
    loadStateDict: (st) => opt.loadStateDict(st),
    save: (path) => opt.save(path),
    load: (path) => opt.load(path),
    close() {
      opt.dispose();
      for (const b of buffers) b.destroy();
    },
  };
}

/** Another spec of the same backend (`make` takes care of the rest). */
export function variant(s: Spec, family: Family, dtype: DType = s.dtype): Spec {
  const backend = family === "MicroAdamTheory" ? "cpu" : s.backend;
  return spec(family, backend, family === "MicroAdam" ? dtype : "f32");
}

// ---------------------------------------------------------------------------
// Data and comparisons.

/** Uniform values in [−scale, scale), seeded. */
export function randomData(seed: number, lengths: number[], scale = 1) {
  const r = rng(seed);
  return lengths.map((n) =>
    new Float32Array(n).map(() => scale * (2 * r() - 1))
  );
}

/** The gradients of step `t` (independent of the parameters). */
export function gradsAt(seed: number, t: number, lengths: number[]) {
  return randomData(seed * 7919 + t, lengths);
}

export const tensorsOf = (data: Float32Array[], prefix = "t"): TensorInit[] =>
  data.map((d, i) => ({ name: `${prefix}${i}`, data: d }));

/** Runs `steps` steps of the seeded gradients starting at step index `from`. */
export function run(h: Handle, seed: number, steps: number, from = 0): void {
  for (let t = from; t < from + steps; t++) {
    h.setGrads(gradsAt(seed, t, h.lengths));
    h.step();
  }
}

export function assertBitsEqual(
  got: Float32Array[],
  want: Float32Array[],
  what: string,
): void {
  assert.equal(got.length, want.length, `${what}: tensor count`);
  got.forEach((g, i) => {
    assert.equal(g.length, want[i].length, `${what}: tensor ${i} length`);
    const a = new Uint32Array(g.buffer, g.byteOffset, g.length);
    const b = new Uint32Array(want[i].buffer, want[i].byteOffset, g.length);
    for (let j = 0; j < a.length; j++) {
      if (a[j] !== b[j]) {
        assert.fail(
          `${what}: tensor ${i} element ${j} is ${g[j]}, expected ${
            want[i][j]
          } (bit-identical)`,
        );
      }
    }
  });
}

export function firstByteDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** Same tensors' state bytes (counters checked separately). */
export function assertBuffersEqual(
  got: OptimizerState,
  want: OptimizerState,
  what: string,
): void {
  assert.equal(got.tensors.length, want.tensors.length, `${what}: tensors`);
  got.tensors.forEach((t, i) => {
    const w = want.tensors[i];
    assert.deepEqual(
      Object.keys(t.buffers).sort(),
      Object.keys(w.buffers).sort(),
      `${what}: tensor ${i} buffer names`,
    );
    for (const k of Object.keys(w.buffers)) {
      const at = firstByteDiff(t.buffers[k], w.buffers[k]);
      assert.equal(
        at,
        -1,
        `${what}: tensor ${i} buffer "${k}" differs at byte ${at}`,
      );
    }
  });
}

export function assertStatesEqual(
  got: OptimizerState,
  want: OptimizerState,
  what: string,
): void {
  const counters = (s: OptimizerState) => ({
    optimizer: s.optimizer,
    config: s.config,
    step: s.step,
    calls: s.calls,
    skipped: s.skipped,
    ring: s.ring,
    lengths: s.tensors.map((t) => t.length),
  });
  assert.deepEqual(counters(got), counters(want), `${what}: counters`);
  assertBuffersEqual(got, want, what);
}

/** ‖got − want‖∞ / ‖want‖∞ over all tensors. */
export function relErr(got: Float32Array[], want: Float32Array[]): number {
  let num = 0;
  let den = 0;
  got.forEach((g, i) => {
    for (let j = 0; j < g.length; j++) {
      num = Math.max(num, Math.abs(g[j] - want[i][j]));
      den = Math.max(den, Math.abs(want[i][j]));
    }
  });
  return den === 0 ? num : num / den;
}

/** Expects `fn` to throw `cls` whose message matches every pattern. */
export function expectError(
  fn: () => unknown,
  cls: new (...a: never[]) => Error,
  ...patterns: RegExp[]
): Error {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  return checkError(caught, cls, patterns);
}

export async function expectReject(
  fn: () => Promise<unknown>,
  cls: new (...a: never[]) => Error,
  ...patterns: RegExp[]
): Promise<Error> {
  let caught: unknown;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  return checkError(caught, cls, patterns);
}

export function checkError(
  caught: unknown,
  cls: new (...a: never[]) => Error,
  patterns: RegExp[],
): Error {
  assert.ok(caught !== undefined, `expected a ${cls.name}, nothing was thrown`);
  assert.ok(
    caught instanceof cls,
    `expected a ${cls.name}, got ${
      caught instanceof Error ? `${caught.name}: ${caught.message}` : caught
    }`,
  );
  for (const p of patterns) assert.match(caught.message, p);
  return caught;
}

export const quadLoss = (ps: Float32Array[], targets: Float32Array[]) =>
  ps.reduce(
    (s, p, i) =>
      s + p.reduce((a, x, j) => a + 0.5 * (x - targets[i][j]) ** 2, 0),
    0,
  );

export async function withTempDir(
  fn: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "microadam_matrix_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
