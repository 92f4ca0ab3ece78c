/**
 * Adam, AdamW and AMSGrad on WebGPU against their CPU references
 * (src/reference/adam.ts), and closed-form checks of single steps.
 *
 * The comparison runs 50 steps of random data (seed printed; replay with
 * `MICROADAM_SEED=…`) through layouts that exercise the planner: tensors
 * sharing one buffer at unaligned offsets (gaps between them must stay
 * untouched), small tensors gathered into an arena, a tensor above the gather
 * threshold, tensors split across 4 KiB bindings, and two param groups with
 * their own lr, weight decay and schedule, under L2 and decoupled weight decay.
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
  createTensors,
  type GpuTensor,
  linearWarmup,
  type OptimizerState,
  type ParamGroupSpec,
  writeTensor,
} from "../mod.ts";
import type { PlacementOptions } from "../extend.ts";
import {
  bufferFrom,
  compareF32,
  hasIeeeArithmetic,
  randomF32,
  readF32,
  rng,
  testDevice,
  testSeed,
  writeTo,
} from "./gpu_util.ts";

const device = await testDevice();
const SEED = testSeed("gpu_adam_test");
const fr = Math.fround;

type Kind = "Adam" | "AdamW" | "AMSGrad";
type GpuParams = (GpuTensor | ParamGroupSpec<GpuTensor>)[];
type CpuParams = (CpuTensor | ParamGroupSpec<CpuTensor>)[];

function gpuOpt(
  kind: Kind,
  params: GpuParams,
  o: AdamOptions & PlacementOptions,
): Adam {
  if (kind === "AdamW") return new AdamW(device, params, o);
  if (kind === "AMSGrad") return new AMSGrad(device, params, o);
  return new Adam(device, params, o);
}

function cpuOpt(kind: Kind, params: CpuParams, o: AdamOptions) {
  if (kind === "AdamW") return new AdamWCpu(params, o);
  if (kind === "AMSGrad") return new AMSGradCpu(params, o);
  return new AdamCpu(params, o);
}

// ---------------------------------------------------------------------------
// GPU vs CPU after 50 steps.

interface TensorDesc {
  name: string;
  length: number;
  /** Element offset in the layout's shared buffer; own buffers when absent. */
  shared?: number;
  group: 0 | 1;
}

interface Layout {
  label: string;
  placement: PlacementOptions;
  /** Elements of the shared buffers (params and grads). */
  sharedLength: number;
  tensors: TensorDesc[];
}

const LAYOUTS: Layout[] = [
  {
    label: "shared buffer at offsets, gathered small tensors, one large",
    placement: {},
    sharedLength: 1700,
    tensors: [
      { name: "shared.a", length: 1000, shared: 0, group: 0 },
      { name: "shared.b", length: 517, shared: 1003, group: 0 },
      { name: "shared.c", length: 1, shared: 1601, group: 1 },
      { name: "bias1", length: 1, group: 1 },
      { name: "bias7", length: 7, group: 1 },
      { name: "small300", length: 300, group: 0 },
      { name: "big", length: 70001, group: 0 }, // above gatherBelow
    ],
  },
  {
    label: "split across 4 KiB bindings, nothing gathered",
    placement: { maxBindingBytes: 4096, gatherBelow: 0 },
    sharedLength: 2200,
    tensors: [
      { name: "long", length: 5003, group: 0 },
      { name: "shared.a", length: 100, shared: 0, group: 1 },
      { name: "shared.b", length: 2000, shared: 129, group: 0 },
      { name: "tiny", length: 3, group: 1 },
    ],
  },
];

interface Config {
  label: string;
  kind: Kind;
  options: AdamOptions;
  /** Group 1's own weight decay (group 0 uses the optimizer's). */
  wd1: number;
}

const CONFIGS: Config[] = [
  {
    label: "Adam, L2 weight decay",
    kind: "Adam",
    options: { lr: 1e-2, weightDecay: 0.05 },
    wd1: 0,
  },
  {
    label: "Adam, decoupled weight decay, betas [0.8, 0.95], eps 1e-6",
    kind: "Adam",
    options: {
      lr: 1e-2,
      weightDecay: 0.05,
      decoupledWeightDecay: true,
      betas: [0.8, 0.95],
      eps: 1e-6,
    },
    wd1: 0.2,
  },
  {
    label: "AdamW, default weight decay 0.01",
    kind: "AdamW",
    options: { lr: 3e-3 },
    wd1: 0.1,
  },
  {
    label: "AMSGrad, L2 weight decay",
    kind: "AMSGrad",
    options: { lr: 1e-2, weightDecay: 0.02 },
    wd1: 0.3,
  },
  {
    label: "AMSGrad, decoupled weight decay",
    kind: "AMSGrad",
    options: { lr: 1e-2, weightDecay: 0.02, decoupledWeightDecay: true },
    wd1: 0,
  },
];

const STEPS = 50;
// Relative error of parameters and moments after STEPS steps. With IEEE
// arithmetic (hasIeeeArithmetic) the twins stay within rounding of each
// other; a GPU without it drifts by an ulp at a time, and over 50 steps a
// small tensor's moments reached 1.65e-6 on the H200 (seed 981627440;
// bench/RESULTS.md, round 17).
const TOL = hasIeeeArithmetic(device) ? 1e-6 : 1e-5;
const SENTINEL = -1234.5;

/** Gradients of one step: uniform with outliers, some exact zeros, some tiny. */
function stepGrads(r: () => number, lengths: number[]): Float32Array[] {
  return lengths.map((n) => {
    const g = randomF32(r, n, 0.5);
    for (let i = 0; i < n; i++) {
      const u = r();
      if (u < 0.02) g[i] = 0;
      else if (u < 0.04) g[i] *= 1e-7;
    }
    return g;
  });
}

function asF32(bytes: Uint8Array): Float32Array {
  return new Float32Array(
    bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
  );
}

interface Outcome {
  maxRel: number;
  exact: number;
  total: number;
}

async function compareRun(
  layout: Layout,
  cfg: Config,
  seed: number,
): Promise<{ params: Outcome; state: Outcome }> {
  const r = rng(seed);
  const lengths = layout.tensors.map((t) => t.length);
  const init = lengths.map((n) => randomF32(r, n, 1));

  // GPU tensors: shared buffers filled with a sentinel between the tensors.
  const made: GPUBuffer[] = [];
  const sharedInit = new Float32Array(layout.sharedLength).fill(SENTINEL);
  layout.tensors.forEach((t, i) => {
    if (t.shared !== undefined) sharedInit.set(init[i], t.shared);
  });
  const sharedParam = bufferFrom(device, sharedInit);
  const sharedGrad = bufferFrom(
    device,
    new Float32Array(layout.sharedLength).fill(SENTINEL),
  );
  made.push(sharedParam, sharedGrad);
  const gpuTensors: GpuTensor[] = layout.tensors.map((t, i) => {
    if (t.shared !== undefined) {
      return {
        name: t.name,
        param: sharedParam,
        grad: sharedGrad,
        length: t.length,
        offset: t.shared,
      };
    }
    const param = bufferFrom(device, init[i]);
    const grad = bufferFrom(device, new Float32Array(t.length));
    made.push(param, grad);
    return { name: t.name, param, grad, length: t.length };
  });
  const cpuTensors: CpuTensor[] = layout.tensors.map((t, i) => ({
    name: t.name,
    param: init[i].slice(),
    grad: new Float32Array(t.length),
  }));
  const groupsOf = <T>(tensors: T[]): ParamGroupSpec<T>[] => [
    { params: tensors.filter((_, i) => layout.tensors[i].group === 0) },
    {
      params: tensors.filter((_, i) => layout.tensors[i].group === 1),
      lr: (cfg.options.lr ?? 1e-3) / 3,
      weightDecay: cfg.wd1,
      schedule: linearWarmup(10),
    },
  ];
  // Optimizer order is group order: map it back to layout order.
  const order = [
    ...layout.tensors.flatMap((t, i) => (t.group === 0 ? [i] : [])),
    ...layout.tensors.flatMap((t, i) => (t.group === 1 ? [i] : [])),
  ];

  const gpu = gpuOpt(cfg.kind, groupsOf(gpuTensors), {
    ...cfg.options,
    ...layout.placement,
  });
  const cpu = cpuOpt(cfg.kind, groupsOf(cpuTensors), cfg.options);
  try {
    let last: Float32Array[] = [];
    for (let s = 0; s < STEPS; s++) {
      last = stepGrads(r, lengths);
      last.forEach((g, i) => {
        const t = gpuTensors[i];
        writeTo(device, t.grad, g, t.offset ?? 0);
        cpuTensors[i].grad.set(g);
      });
      gpu.step();
      cpu.step();
    }

    const sharedNow = await readF32(device, sharedParam, layout.sharedLength);
    const gradsNow = await readF32(device, sharedGrad, layout.sharedLength);
    const covered = new Uint8Array(layout.sharedLength);
    layout.tensors.forEach((t, i) => {
      if (t.shared === undefined) return;
      covered.fill(1, t.shared, t.shared + t.length);
      // The optimizer never writes gradients.
      assert.deepEqual(
        gradsNow.subarray(t.shared, t.shared + t.length),
        last[i],
        `${t.name}: gradient buffer modified`,
      );
    });
    for (let j = 0; j < layout.sharedLength; j++) {
      if (covered[j]) continue;
      assert.equal(sharedNow[j], SENTINEL, `gap element ${j} was written`);
      assert.equal(gradsNow[j], SENTINEL, `grad gap element ${j} was written`);
    }

    const params: Outcome = { maxRel: 0, exact: 0, total: 0 };
    for (const [i, t] of layout.tensors.entries()) {
      const got = t.shared !== undefined
        ? sharedNow.slice(t.shared, t.shared + t.length)
        : await readF32(device, gpuTensors[i].param, t.length);
      const want = cpuTensors[i].param as Float32Array;
      const c = compareF32(got, want);
      assert.equal(c.nonFinite, 0, `${t.name}: non-finite parameters`);
      assert.ok(
        c.rel <= TOL,
        `${cfg.label} / ${t.name}: params rel err ${c.rel} > ${TOL} (worst element ${c.worst}: ${
          got[c.worst]
        } vs ${want[c.worst]})`,
      );
      params.maxRel = Math.max(params.maxRel, c.rel);
      params.exact += c.exact * t.length;
      params.total += t.length;
    }

    const gs: OptimizerState = await gpu.stateDict();
    const cs: OptimizerState = cpu.stateDict();
    assert.deepEqual(
      [gs.optimizer, gs.config, gs.step, gs.calls, gs.skipped],
      [cs.optimizer, cs.config, cs.step, cs.calls, cs.skipped],
    );
    const state: Outcome = { maxRel: 0, exact: 0, total: 0 };
    gs.tensors.forEach((t, k) => {
      const name = layout.tensors[order[k]].name;
      assert.equal(t.name, name);
      assert.deepEqual(
        Object.keys(t.buffers),
        Object.keys(cs.tensors[k].buffers),
      );
      for (const [key, bytes] of Object.entries(t.buffers)) {
        const got = asF32(bytes);
        const want = asF32(cs.tensors[k].buffers[key]);
        const c = compareF32(got, want);
        assert.ok(
          c.rel <= TOL,
          `${cfg.label} / ${name}: ${key} rel err ${c.rel} > ${TOL}`,
        );
        state.maxRel = Math.max(state.maxRel, c.rel);
        state.exact += c.exact * got.length;
        state.total += got.length;
      }
    });
    return { params, state };
  } finally {
    gpu.dispose();
    cpu.dispose();
    for (const b of made) b.destroy();
  }
}

for (const [li, layout] of LAYOUTS.entries()) {
  for (const [ci, cfg] of CONFIGS.entries()) {
    Deno.test(
      `gpu vs cpu, ${STEPS} steps: ${cfg.label} [${layout.label}]`,
      async () => {
        const { params, state } = await compareRun(
          layout,
          cfg,
          SEED + 1000 * li + ci,
        );
        const pct = (o: Outcome) => (100 * o.exact / o.total).toFixed(1);
        console.log(
          `  params rel err ${params.maxRel.toExponential(2)} (${
            pct(params)
          }% bit-identical); state rel err ${state.maxRel.toExponential(2)} (${
            pct(state)
          }% bit-identical)`,
        );
      },
    );
  }
}

// The reference rounds in the kernel's order (lr held as f32), so where the
// device's '/' and sqrt are IEEE-exact, as on llvmpipe in CI, one step agrees
// bit for bit; other GPUs may differ by an ulp (the TOL tests above).
Deno.test({
  name:
    "gpu vs cpu: one Adam step is bit-identical to AdamCpu (IEEE / and sqrt)",
  ignore: !hasIeeeArithmetic(device),
  fn: async () => {
    const r = rng(SEED);
    const n = 4096;
    const p0 = randomF32(r, n);
    const g = randomF32(r, n);
    const param = bufferFrom(device, p0);
    const grad = bufferFrom(device, g);
    const gpu = new Adam(device, [{ param, grad, length: n }], { lr: 5e-3 });
    const cpuParam = p0.slice();
    const cpu = new AdamCpu([{ param: cpuParam, grad: g }], { lr: 5e-3 });
    try {
      gpu.step();
      cpu.step();
      const c = compareF32(await readF32(device, param, n), cpuParam);
      assert.equal(c.exact, 1, `only ${c.exact * 100}% bit-identical`);
    } finally {
      gpu.dispose();
      param.destroy();
      grad.destroy();
    }
  },
});

// ---------------------------------------------------------------------------
// Closed forms on the GPU.

/** Spacing of f32 values around |x|. */
function ulp(x: number): number {
  const a = Math.abs(fr(x));
  if (a < 2 ** -126) return 2 ** -149;
  return 2 ** (Math.floor(Math.log2(a)) - 23);
}

/** Runs `grads.length` steps of `kind` on one tensor; params after each step. */
async function trajectory(
  kind: Kind,
  p0: Float32Array,
  grads: Float32Array[],
  o: AdamOptions,
): Promise<{ params: Float32Array[]; state: OptimizerState }> {
  const n = p0.length;
  const param = bufferFrom(device, p0);
  const grad = bufferFrom(device, new Float32Array(n));
  const opt = gpuOpt(kind, [{ name: "w", param, grad, length: n }], o);
  try {
    const params: Float32Array[] = [];
    for (const g of grads) {
      writeTo(device, grad, g);
      opt.step();
      params.push((await readF32(device, param, n)).slice());
    }
    return { params, state: await opt.stateDict() };
  } finally {
    opt.dispose();
    param.destroy();
    grad.destroy();
  }
}

/** Gradients spanning zero, tiny, ε-sized, ordinary and huge magnitudes. */
function spanningGrads(r: () => number, n: number): Float32Array {
  const special = [
    0,
    -0,
    1e-12,
    -1e-9,
    1e-8,
    -1e-6,
    1e-4,
    -1e-3,
    2e-3,
    -0.5,
    1,
    -7,
    1e4,
    -3e7,
  ];
  const g = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    g[i] = i < special.length
      ? special[i]
      : (r() < 0.5 ? -1 : 1) * 10 ** (-10 + 14 * r());
  }
  return g;
}

for (const kind of ["Adam", "AdamW", "AMSGrad"] as const) {
  for (const eps of [1e-8, 1e-3]) {
    Deno.test(
      `closed form: ${kind}'s first step moves each coordinate by lr·g/(|g| + ε) (ε = ${eps})`,
      async () => {
        const r = rng(SEED + 17);
        const n = 1000;
        const lr = 1e-2;
        const p0 = randomF32(r, n, 1);
        const g = spanningGrads(r, n);
        const { params: [p1] } = await trajectory(kind, p0, [g], {
          lr,
          eps,
          weightDecay: 0,
        });
        let worst = 0;
        for (let i = 0; i < n; i++) {
          const want = lr * g[i] / (Math.abs(g[i]) + fr(eps));
          const moved = p0[i] - p1[i];
          const err = Math.abs(moved - want);
          const tol = 1e-6 * Math.abs(want) + ulp(p0[i]) + ulp(p1[i]);
          worst = Math.max(worst, err / tol);
          assert.ok(
            err <= tol,
            `element ${i}: g ${
              g[i]
            }, moved ${moved}, expected ${want} (±${tol})`,
          );
        }
        console.log(`  worst error / tolerance ${worst.toFixed(3)}`);
      },
    );
  }
}

Deno.test(
  "closed form: AdamW with a zero gradient multiplies by f32(1 − lr·wd) exactly, state stays zero",
  async () => {
    const r = rng(SEED + 23);
    const n = 777;
    const lr = 0.1;
    const wd = 0.5;
    const p0 = randomF32(r, n, 100);
    p0.set([0, -0, 1e-30, -3e-38, 65504, -1], 0);
    const zeros = Array.from({ length: 10 }, () => new Float32Array(n));
    const { params, state } = await trajectory("AdamW", p0, zeros, {
      lr,
      weightDecay: wd,
    });
    const decay = fr(1 - lr * wd);
    let want = p0;
    params.forEach((p, s) => {
      want = want.map((x) => fr(x * decay));
      assert.deepEqual(
        new Uint32Array(p.buffer),
        new Uint32Array(want.buffer),
        `step ${s + 1}: p ≠ f32(p · ${decay})`,
      );
    });
    // And against the real number (1 − lr·wd)^10.
    const c = compareF32(params[9], p0.map((x) => x * (1 - lr * wd) ** 10));
    assert.ok(c.rel <= 1e-6, `rel err ${c.rel} against p0·(1 − lr·wd)^10`);
    for (const bytes of Object.values(state.tensors[0].buffers)) {
      assert.ok(bytes.every((b) => b === 0), "moments stay zero");
    }
  },
);

Deno.test(
  "closed form: Adam's L2 decay with a zero gradient is a gradient wd·p (first step lr·wd·p/(|wd·p| + ε)), not a multiplicative decay",
  async () => {
    const r = rng(SEED + 29);
    const n = 500;
    const lr = 1e-2;
    const wd = 0.1;
    const eps = 1e-3;
    const p0 = randomF32(r, n, 1);
    const { params: [p1] } = await trajectory(
      "Adam",
      p0,
      [new Float32Array(n)],
      { lr, weightDecay: wd, eps },
    );
    for (let i = 0; i < n; i++) {
      const g = fr(fr(wd) * p0[i]);
      const want = lr * g / (Math.abs(g) + fr(eps));
      const moved = p0[i] - p1[i];
      const tol = 1e-6 * Math.abs(want) + ulp(p0[i]) + ulp(p1[i]);
      assert.ok(
        Math.abs(moved - want) <= tol,
        `element ${i}: p0 ${p0[i]}, moved ${moved}, expected ${want}`,
      );
    }
  },
);

Deno.test(
  "closed form: AMSGrad keeps max(v) when v decreases: its step is Adam's times (√v₂/√bc₂ + ε)/(√v₁/√bc₂ + ε)",
  async () => {
    const r = rng(SEED + 31);
    const n = 600;
    const lr = 1e-2;
    const b1 = 0.9;
    const b2 = 0.5; // v halves each step without new gradient: a large effect
    const eps = 1e-8;
    const g1 = new Float32Array(n).map(() =>
      (r() < 0.5 ? -1 : 1) * (0.1 + 2 * r())
    );
    // Second gradient: zero or a tenth of the first, so v₂ < v₁ everywhere.
    const g2 = g1.map((x, i) => (i % 2 ? 0 : 0.1 * x));
    // Third: ten times the first, so v₃ > v₁ and the maximum is v again.
    const g3 = g1.map((x) => 10 * x);
    const o = { lr, betas: [b1, b2] as const, eps };
    const zero = new Float32Array(n);
    const adam = await trajectory("Adam", zero, [g1, g2, g3], o);
    const ams = await trajectory("AMSGrad", zero, [g1, g2, g3], o);

    assert.deepEqual(ams.params[0], adam.params[0], "step 1 is the same");
    const bc2 = 1 - b2 ** 2;
    let lo = Infinity;
    let hi = 0;
    for (let i = 0; i < n; i++) {
      const v1 = (1 - b2) * g1[i] ** 2;
      const v2 = b2 * v1 + (1 - b2) * g2[i] ** 2;
      assert.ok(v2 < v1);
      const want = (Math.sqrt(v2) / Math.sqrt(bc2) + eps) /
        (Math.sqrt(v1) / Math.sqrt(bc2) + eps);
      const dAdam = adam.params[0][i] - adam.params[1][i];
      const dAms = ams.params[0][i] - ams.params[1][i];
      const ratio = dAms / dAdam;
      lo = Math.min(lo, ratio);
      hi = Math.max(hi, ratio);
      assert.ok(
        Math.abs(ratio - want) <= 1e-5 * want,
        `element ${i}: step ratio ${ratio}, closed form ${want}`,
      );
      // Step 3: v₃ > v₁, so both use v₃ and move by the same amount.
      const d3Adam = adam.params[1][i] - adam.params[2][i];
      const d3Ams = ams.params[1][i] - ams.params[2][i];
      assert.ok(
        Math.abs(d3Ams / d3Adam - 1) <= 1e-5,
        `element ${i}: step 3 ratio ${d3Ams / d3Adam}, expected 1`,
      );
    }
    console.log(
      `  step-2 ratio AMSGrad/Adam in [${lo.toFixed(4)}, ${hi.toFixed(4)}]`,
    );
    // The state holds the maximum: maxExpAvgSq ≥ expAvgSq, = v₃ after step 3.
    const bufs = ams.state.tensors[0].buffers;
    const v = asF32(bufs.expAvgSq);
    const vmax = asF32(bufs.maxExpAvgSq);
    assert.deepEqual(vmax, v, "after step 3 the maximum is the current v");
    assert.deepEqual(
      Object.keys(adam.state.tensors[0].buffers),
      ["expAvg", "expAvgSq"],
    );
  },
);

Deno.test(
  "closed form: AMSGrad's maxExpAvgSq holds v₁ while v decreases",
  async () => {
    const n = 64;
    const g1 = new Float32Array(n).map((_, i) => (i % 3) - 1 + 0.5);
    const { state } = await trajectory(
      "AMSGrad",
      new Float32Array(n),
      [g1, new Float32Array(n), new Float32Array(n)],
      { lr: 1e-3, betas: [0.9, 0.5] },
    );
    const b = state.tensors[0].buffers;
    const v = asF32(b.expAvgSq);
    const vmax = asF32(b.maxExpAvgSq);
    for (let i = 0; i < n; i++) {
      const v1 = fr(fr(fr(1 - fr(0.5)) * g1[i]) * g1[i]);
      assert.equal(vmax[i], v1, `element ${i}: max is v₁`);
      assert.equal(v[i], fr(fr(0.5) * fr(fr(0.5) * v1)), `element ${i}: v₃`);
    }
  },
);

// The non-finite check reads CHECK_TILES (8) tiles of 1024 elements per
// workgroup, walking the segments they lie in: a bad gradient must be found
// wherever it lies (a tensor's first or last element, a tile a workgroup
// shares with other tensors, its eighth tile), and the first bad tensor of
// the batch named. Lengths that are all multiples of 4 take the 16-byte
// loads.
for (const aligned of [true, false]) {
  Deno.test(`check_finite: a bad gradient anywhere in a batch of tensors sharing buffers skips the step and names the first bad tensor [${aligned ? "16-byte loads" : "word loads"}]`, async () => {
    const lengths = aligned
      ? [1000, 3000, 4, 9000, 70000, 516]
      : [1000, 3001, 1, 9000, 70001, 517];
    const names = lengths.map((_, i) => `t${i}`);
    const tensors = createTensors(device, lengths, { names });
    const opt = new AdamW(device, tensors, { lr: 1e-3, gatherBelow: 0 });
    const clean = () => lengths.map((n) => new Float32Array(n).fill(1e-3));
    // (tensor, element) pairs, one bad gradient each, then two at once.
    // Tiles: t0 0, t1 1-3, t2 4, t3 5-13, t4 14-82, t5 83.
    const cases: [number, number][][] = [
      [[0, 999]],
      [[1, 0]],
      [[1, lengths[1] - 1]],
      [[2, 0]],
      [[3, 8191]],
      [[3, 8999]],
      [[3, 2 * 1024 + 5]], // tile 7: the first workgroup's last
      [[4, 1024 + 7]], // tile 15: the second's last
      [[4, 5 * 8192 + 3]],
      [[4, lengths[4] - 1]],
      [[5, lengths[5] - 1]],
      [[4, 100], [3, 4000]],
    ];
    try {
      for (const [ci, poison] of cases.entries()) {
        const g = clean();
        for (const [t, j] of poison) {
          g[t][j] = [NaN, Infinity, -(2 ** 61)][ci % 3];
        }
        for (const [t, x] of g.entries()) writeTensor(device, tensors[t], x);
        opt.step();
        const st = await opt.status();
        const first = Math.min(...poison.map(([t]) => t));
        const what = `case ${ci}: ${JSON.stringify(poison)}`;
        assert.deepEqual([st.step, st.skipped], [0, ci + 1], what);
        assert.equal(st.lastNonFiniteTensor, names[first], what);
      }
      for (const [t, x] of clean().entries()) {
        writeTensor(device, tensors[t], x);
      }
      opt.step();
      const st = await opt.status();
      assert.deepEqual([st.step, st.skipped], [1, cases.length]);
    } finally {
      opt.dispose();
      for (const b of new Set(tensors.flatMap((t) => [t.param, t.grad]))) {
        b.destroy();
      }
    }
  });
}

Deno.test(
  "AMSGrad: the moments of every batch in one buffer (packBuffers), each range aligned, state exactly 12 bytes per parameter",
  async () => {
    const device = await testDevice();
    const sizes = [1000, 33, 4097, 70];
    const tensors = sizes.map((n, i) => ({
      param: bufferFrom(device, new Float32Array(n).fill(1)),
      grad: bufferFrom(device, new Float32Array(n).fill(0.5)),
      length: n,
      name: `t${i}`,
    }));
    const made: GPUBufferDescriptor[] = [];
    const create = device.createBuffer;
    device.createBuffer = (d: GPUBufferDescriptor) => {
      made.push(d);
      return create.call(device, d);
    };
    let opt: AMSGrad;
    try {
      // One batch per tensor: each is in buffers of its own, none gathered.
      opt = new AMSGrad(device, tensors, { lr: 1e-3, gatherBelow: 0 });
    } finally {
      device.createBuffer = create;
    }
    const moments = made.filter((d) => d.label?.startsWith("adam moments"));
    assert.equal(moments.length, 1, "one buffer for 4 batches × 3 moments");
    // Three ranges per tensor in batch order, each at the next multiple of
    // the offset alignment: the buffer ends where the last range does.
    const align = device.limits.minStorageBufferOffsetAlignment;
    let end = 0;
    for (const n of sizes) {
      for (let m = 0; m < 3; m++) end = Math.ceil(end / align) * align + 4 * n;
    }
    assert.equal(moments[0].size, end);
    const params = sizes.reduce((s, n) => s + n, 0);
    assert.equal(opt.stateBytes(), 12 * params);
    const mem = opt.memoryBytes();
    assert.equal(mem.state, 12 * params);
    // The alignment gaps count as workspace.
    assert.ok(mem.workspace >= end - 12 * params);
    // The moments land in their own ranges: after one step of g = 0.5 every
    // tensor's m is (1 - β1)·0.5 and v and max_v (1 - β2)·0.25 (in f32),
    // as the state dict reads them back.
    opt.step();
    const state = await opt.stateDict();
    const f32 = (b: Uint8Array) =>
      new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
    state.tensors.forEach((t, i) => {
      assert.equal(f32(t.buffers.expAvg).length, sizes[i]);
      for (
        const [key, want] of [
          ["expAvg", Math.fround(Math.fround(1 - Math.fround(0.9)) * 0.5)],
          ["expAvgSq", Math.fround(Math.fround(1 - Math.fround(0.999)) * 0.25)],
          [
            "maxExpAvgSq",
            Math.fround(Math.fround(1 - Math.fround(0.999)) * 0.25),
          ],
        ] as const
      ) {
        const got = f32(t.buffers[key]);
        assert.ok(
          got.every((x) => Math.abs(x - want) <= 1e-6 * want),
          `${key} of t${i}: ${got[0]}, expected ${want}`,
        );
      }
    });
    opt.dispose();
    for (const t of tensors) {
      t.param.destroy();
      t.grad.destroy();
    }
  },
);
