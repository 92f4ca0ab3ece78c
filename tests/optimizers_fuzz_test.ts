/**
 * Fuzzing the public API: random option values (every non-finite policy
 * included), tensor layouts, non-finite injections, the caller's found-inf
 * flag (set or clear) on some steps, and checkpoint mutations,
 * driven through the CPU and GPU twins alike. Every case must end in a typed
 * error (the same class on both backends) or in identical results (within
 * a few ulps where the device's division is the hardware's, see
 * compareParams), and a refused call must leave the state as it was.
 *
 * `deno task test` runs a bounded number of cases from a fresh seed (printed;
 * replay with MICROADAM_SEED=…); MICROADAM_FUZZ_CASES=N runs more.
 */

import assert from "node:assert/strict";
import {
  Adam,
  AdamCpu,
  AdamW,
  AdamWCpu,
  AMSGrad,
  AMSGradCpu,
  CheckpointError,
  type CpuTensor,
  createTensor,
  fromBf16Array,
  type GpuTensor,
  InvalidOptionError,
  MicroAdam,
  MicroAdamCpu,
  type OptimizerState,
  readTensor,
  TensorMismatchError,
  toBf16Array,
  writeTensor,
} from "../mod.ts";
import { decodeCheckpoint, encodeCheckpoint } from "../extend.ts";
import { hasIeeeArithmetic, rng, testSeed } from "./gpu_util.ts";
import { device } from "./optimizers.ts";

const CASES = Number(Deno.env.get("MICROADAM_FUZZ_CASES") ?? 60);
const IEEE = hasIeeeArithmetic(device);
// The caller's found-inf flag (`step({ foundInf })`) of the GPU twins.
const FLAG = device.createBuffer({
  size: 4,
  usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
});

type Family = "MicroAdam" | "Adam" | "AdamW" | "AMSGrad";
type Rand = () => number;

const pick = <T>(r: Rand, xs: readonly T[]): T =>
  xs[Math.floor(r() * xs.length)];

/** A value for an option: valid often, the rest from the attacker's list. */
function optionValue(r: Rand, key: string): unknown {
  const hostile = [
    NaN,
    Infinity,
    -Infinity,
    -1,
    0,
    -0,
    1e39,
    1e-45,
    2 ** 32,
    2 ** 53,
    0.999999999,
    null,
    "0.1",
    "false",
    true,
    {},
    [],
    [0.9],
    [0.9, 1],
    2n,
  ];
  const valid: Record<string, unknown[]> = {
    lr: [1e-3, 0.05, 0],
    betas: [[0.9, 0.999], [0, 0], [0.5, 0.9]],
    eps: [1e-8, 1e-6, 2 ** -126],
    weightDecay: [0, 0.01, 0.5],
    nonFinite: ["skip", "error", "unchecked"],
    amsgrad: [true, false],
    window: [1, 3, 10],
    density: [0.01, 0.3, 1],
    topkBlockSize: [1, 16, 257, 4096],
    efBlockSize: [2, 64, 4096],
  };
  return r() < 0.85 && valid[key] ? pick(r, valid[key]) : pick(r, hostile);
}

function randomOptions(r: Rand, family: Family): Record<string, unknown> {
  const keys = family === "MicroAdam"
    ? [
      "lr",
      "betas",
      "eps",
      "weightDecay",
      "window",
      "density",
      "topkBlockSize",
      "efBlockSize",
      "nonFinite",
    ]
    : [
      "lr",
      "betas",
      "eps",
      "weightDecay",
      "nonFinite",
      ...(family === "Adam" ? ["amsgrad"] : []),
    ];
  const o: Record<string, unknown> = {};
  for (const k of keys) if (r() < 0.3) o[k] = optionValue(r, k);
  if (r() < 0.1) o[pick(r, ["weight_decay", "lR", "beta1", "momentum"])] = 0.1;
  return o;
}

interface Twin {
  gpu: MicroAdam | Adam | AdamW | AMSGrad;
  cpu: MicroAdamCpu | AdamCpu | AdamWCpu | AMSGradCpu;
  gpuTensors: GpuTensor[];
  cpuTensors: CpuTensor[];
  bf16: boolean;
  close(): void;
}

/** Builds both twins, or returns the errors each constructor threw. */
function build(
  family: Family,
  bf16: boolean,
  lengths: number[],
  options: Record<string, unknown>,
  r: Rand,
): Twin | { gpuError: unknown; cpuError: unknown } {
  const init = lengths.map((n) => new Float32Array(n).map(() => 2 * r() - 1));
  const gpuTensors = init.map((d, i) =>
    createTensor(device, d, { name: `t${i}`, dtype: bf16 ? "bf16" : "f32" })
  );
  const cpuTensors = init.map((d, i): CpuTensor => ({
    name: `t${i}`,
    param: bf16 ? toBf16Array(d) : d.slice(),
    grad: bf16 ? new Uint16Array(d.length) : new Float32Array(d.length),
  }));
  const dtype = bf16 ? { dtype: "bf16" } : {};
  const placement = r() < 0.3 ? { maxBindingBytes: 4096 } : {};
  let gpu: Twin["gpu"] | undefined;
  let cpu: Twin["cpu"] | undefined;
  let gpuError: unknown;
  let cpuError: unknown;
  try {
    const o = { ...options, ...dtype, ...placement } as never;
    gpu = family === "MicroAdam"
      ? new MicroAdam(device, gpuTensors, o)
      : family === "Adam"
      ? new Adam(device, gpuTensors, o)
      : family === "AdamW"
      ? new AdamW(device, gpuTensors, o)
      : new AMSGrad(device, gpuTensors, o);
  } catch (e) {
    gpuError = e;
  }
  try {
    const o = { ...options, ...dtype } as never;
    cpu = family === "MicroAdam"
      ? new MicroAdamCpu(cpuTensors, o)
      : family === "Adam"
      ? new AdamCpu(cpuTensors, o)
      : family === "AdamW"
      ? new AdamWCpu(cpuTensors, o)
      : new AMSGradCpu(cpuTensors, o);
  } catch (e) {
    cpuError = e;
  }
  const freeTensors = () => {
    for (const t of gpuTensors) {
      t.param.destroy();
      t.grad.destroy();
    }
  };
  if (!gpu || !cpu) {
    gpu?.dispose();
    freeTensors();
    return { gpuError, cpuError };
  }
  return {
    gpu,
    cpu,
    gpuTensors,
    cpuTensors,
    bf16,
    close() {
      gpu!.dispose();
      cpu!.dispose();
      freeTensors();
    },
  };
}

/** A gradient, sometimes poisoned with NaN, ±Infinity or a value past the limit. */
function gradient(r: Rand, n: number): Float32Array {
  const g = new Float32Array(n).map(() => (2 * r() - 1) * 10 ** (4 * r() - 3));
  if (r() < 0.15) {
    g[Math.floor(r() * n)] = pick(r, [
      NaN,
      Infinity,
      -Infinity,
      3e38,
      -(2 ** 61),
    ]);
  }
  return g;
}

async function compareParams(t: Twin, what: string): Promise<void> {
  for (let i = 0; i < t.gpuTensors.length; i++) {
    const got = await readTensor(device, t.gpuTensors[i]);
    const want = t.bf16
      ? fromBf16Array(t.cpuTensors[i].param as Uint16Array)
      : t.cpuTensors[i].param as Float32Array;
    // f32 MicroAdam's last division and sqrt are the hardware's, and so are
    // the Adam family's, which is bit-exact only where they are IEEE-exact
    // and a · b + c is not fused (llvmpipe; not the H200): a few
    // ulps of each update, so the tolerance scales with the lr as well.
    const lr = t.gpu.paramGroups[0].lr;
    const hardware = !t.bf16 && (t.gpu instanceof MicroAdam || !IEEE);
    for (let j = 0; j < got.length; j++) {
      const tol = hardware ? 1e-6 * (Math.abs(want[j]) + 10 * lr) : 0;
      // With nonFinite "unchecked" a NaN reaches the parameters on both
      // twins (payloads may differ).
      if (Number.isNaN(got[j]) && Number.isNaN(want[j])) continue;
      if (got[j] !== want[j] && !(Math.abs(got[j] - want[j]) <= tol)) {
        assert.fail(
          `${what}: tensor ${i}[${j}] GPU ${got[j]} vs CPU ${want[j]}`,
        );
      }
    }
  }
}

/** A mutation of a checkpoint: bytes, counters, names, values. */
function mutate(
  r: Rand,
  s: OptimizerState,
): { state?: OptimizerState; bytes?: Uint8Array; label: string } {
  const which = Math.floor(r() * 7);
  const bytes = encodeCheckpoint(s);
  switch (which) {
    case 0: {
      const b = bytes.slice();
      b[Math.floor(r() * b.length)] ^= 1 << Math.floor(r() * 8);
      return { bytes: b, label: "a flipped bit" };
    }
    case 1:
      return {
        bytes: bytes.slice(0, Math.floor(r() * bytes.length)),
        label: "truncated",
      };
    case 2:
      return {
        state: { ...s, step: pick(r, [-1, 2 ** 32, 1.5, NaN]) },
        label: "a bad step counter",
      };
    case 3:
      return {
        state: { ...s, tensors: [...s.tensors].reverse() },
        label: "tensors in another order",
      };
    case 4:
      return {
        state: {
          ...s,
          tensors: s.tensors.map((t, i) => i === 0 ? { ...t, name: "zz" } : t),
        },
        label: "a renamed tensor",
      };
    case 5: {
      const t = s.tensors[s.tensors.length - 1];
      const key = pick(r, Object.keys(t.buffers));
      const b = t.buffers[key].slice();
      if (b.length >= 4) {
        new DataView(b.buffer).setUint32(
          4 * Math.floor(r() * (b.length / 4)),
          0x7fc07fc0,
          true,
        );
      }
      return {
        state: {
          ...s,
          tensors: s.tensors.map((x) =>
            x === t ? { ...x, buffers: { ...x.buffers, [key]: b } } : x
          ),
        },
        label: `NaN bits in ${key}`,
      };
    }
    default:
      return {
        state: { ...s, config: { ...s.config, extra: 1 } },
        label: "another config",
      };
  }
}

Deno.test(`fuzz: ${CASES} random cases of options, layouts, non-finite gradients and checkpoint mutations, CPU and GPU twins`, async () => {
  const seed = testSeed("fuzz");
  const r = rng(seed);
  const tally = {
    typed: 0,
    agreed: 0,
    steps: 0,
    refusedSteps: 0,
    flagged: 0,
    mutations: 0,
  };
  for (let c = 0; c < CASES; c++) {
    const family = pick(
      r,
      ["MicroAdam", "MicroAdam", "Adam", "AdamW", "AMSGrad"] as const,
    );
    const bf16 = family === "MicroAdam" && r() < 0.5;
    const lengths = Array.from(
      { length: 1 + Math.floor(r() * 4) },
      () => pick(r, [1, 2, 7, 33, 300, 1000, 4097]) + Math.floor(r() * 3),
    );
    const options = randomOptions(r, family);
    const label = `case ${c} (seed ${seed}): ${family}${bf16 ? " bf16" : ""} ${
      JSON.stringify(lengths)
    } ${
      JSON.stringify(options, (_k, v) => typeof v === "bigint" ? `${v}n` : v)
    }`;
    const twin = build(family, bf16, lengths, options, r);
    if ("gpuError" in twin) {
      const { gpuError, cpuError } = twin;
      const both = `${label}: GPU ${gpuError}, CPU ${cpuError}`;
      for (const e of [gpuError, cpuError]) {
        if (e === undefined) continue;
        assert.ok(
          e instanceof InvalidOptionError || e instanceof TensorMismatchError,
          `${both}: expected typed errors`,
        );
      }
      if (cpuError === undefined) {
        // Only the GPU has placement limits (a small maxBindingBytes).
        assert.match(
          String(gpuError),
          /storage binding/,
          `${both}: the twins disagree`,
        );
      } else {
        assert.equal(
          (gpuError as Error)?.constructor,
          (cpuError as Error).constructor,
          `${both}: the twins disagree`,
        );
      }
      tally.typed++;
      continue;
    }
    try {
      const steps = 2 + Math.floor(r() * 4);
      for (let s = 0; s < steps; s++) {
        for (let i = 0; i < lengths.length; i++) {
          const g = gradient(r, lengths[i]);
          writeTensor(device, twin.gpuTensors[i], g);
          twin.cpuTensors[i].grad.set(twin.bf16 ? toBf16Array(g) : g);
        }
        // The caller's found-inf flag on some steps, set or clear.
        const flag = r() < 0.25 ? r() < 0.5 : undefined;
        if (flag !== undefined) {
          device.queue.writeBuffer(FLAG, 0, new Float32Array([flag ? 1 : 0]));
          tally.flagged++;
        }
        let cpuError: unknown;
        try {
          twin.cpu.step(flag === undefined ? {} : { foundInf: flag });
        } catch (e) {
          cpuError = e;
        }
        let gpuError: unknown;
        try {
          twin.gpu.step(flag === undefined ? {} : { foundInf: FLAG });
        } catch (e) {
          gpuError = e;
        }
        // A step refused before anything runs (an lr·weightDecay of 1 or
        // more, say) is refused by both twins alike.
        if (cpuError instanceof InvalidOptionError) {
          assert.ok(
            gpuError instanceof InvalidOptionError,
            `${label}: CPU ${cpuError}, GPU ${gpuError}`,
          );
          tally.refusedSteps++;
          continue;
        }
        for (const e of [gpuError, cpuError]) {
          if (e === undefined) continue;
          assert.equal(
            (e as Error).name,
            "NonFiniteGradientError",
            `${label}: ${e}`,
          );
        }
        tally.steps++;
      }
      let gpuStatus;
      try {
        gpuStatus = await twin.gpu.status();
      } catch (e) {
        assert.equal(
          (e as Error).name,
          "NonFiniteGradientError",
          `${label}: ${e}`,
        );
        gpuStatus = await twin.gpu.status();
      }
      assert.deepEqual(gpuStatus, twin.cpu.status(), `${label}: status`);
      await compareParams(twin, label);

      // A checkpoint mutation, into both twins.
      const state = await twin.gpu.stateDict();
      const m = mutate(r, state);
      const cpuBefore = twin.cpu.stateDict();
      for (const target of [twin.cpu, twin.gpu]) {
        let loaded: OptimizerState | undefined;
        let error: unknown;
        try {
          loaded = m.bytes ? decodeCheckpoint(m.bytes) : m.state!;
          target.loadStateDict(loaded);
        } catch (e) {
          error = e;
        }
        if (error) {
          assert.ok(
            error instanceof CheckpointError,
            `${label}, ${m.label}: ${error}`,
          );
          const now = target instanceof MicroAdamCpu || !("device" in target)
            ? (target as MicroAdamCpu).stateDict()
            : await (target as MicroAdam).stateDict();
          const before: OptimizerState = target === twin.cpu
            ? cpuBefore
            : state;
          assert.deepEqual(
            now.tensors,
            before.tensors,
            `${label}, ${m.label}: state changed after a refused load`,
          );
        }
      }
      tally.mutations++;
      tally.agreed++;
    } finally {
      twin.close();
    }
  }
  console.log(
    `fuzz: ${CASES} cases: ${tally.typed} refused with typed errors by both twins, ${tally.agreed} agreed over ${tally.steps} steps (${tally.refusedSteps} steps refused by both, ${tally.flagged} with a found-inf flag) and ${tally.mutations} checkpoint mutations`,
  );
});
