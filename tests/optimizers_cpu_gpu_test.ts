/**
 * The optimizer matrix (tests/optimizers.ts), CPU <-> GPU: the twins agree on
 * the same data, and their states load across backends; with
 * `nonFinite: "unchecked"` (Adam family) they agree as well, on finite
 * gradients (bit-identical to "skip") and on NaN / ±Infinity / huge ones
 * (which then go into the arithmetic).
 */

import assert from "node:assert/strict";
import { CheckpointError, type OptimizerState } from "../mod.ts";
import {
  type AnyOptions,
  assertBitsEqual,
  assertStatesEqual,
  device,
  type DType,
  expectError,
  type Family,
  gradsAt,
  type Handle,
  make,
  randomData,
  relErr,
  run,
  type Spec,
  spec,
  tensorsOf,
  withTempDir,
} from "./optimizers.ts";
import { hasIeeeArithmetic } from "./gpu_util.ts";

// CPU ↔ GPU.

const PAIRS: { label: string; gpu: Spec; cpu: Spec; tol: number }[] = [
  { label: "MicroAdam f32", tol: 1e-5, ...pair("MicroAdam", "f32") },
  { label: "MicroAdam bf16", tol: 1e-5, ...pair("MicroAdam", "bf16") },
  { label: "Adam", tol: 1e-6, ...pair("Adam") },
  { label: "AdamW", tol: 1e-6, ...pair("AdamW") },
  { label: "AMSGrad", tol: 1e-6, ...pair("AMSGrad") },
];

function pair(family: Family, dtype: DType = "f32") {
  return { gpu: spec(family, "gpu", dtype), cpu: spec(family, "cpu", dtype) };
}

for (const p of PAIRS) {
  const lengths = [3, 1000, 4097];
  const opts = (s: Spec): AnyOptions => ({
    lr: s.lr / 10,
    weightDecay: s.family === "Adam" ? 0.01 : s.family === "AMSGrad" ? 0 : 0.02,
  });

  Deno.test(`cpu↔gpu: 10 steps on the same data agree [${p.label}]`, async () => {
    const data = randomData(23, lengths);
    const gpu = make(p.gpu, tensorsOf(data), opts(p.gpu));
    const cpu = make(p.cpu, tensorsOf(data), opts(p.cpu));
    try {
      run(gpu, 23, 10);
      run(cpu, 23, 10);
      const err = relErr(await gpu.params(), await cpu.params());
      const gs = await gpu.stateDict();
      const cs = await cpu.stateDict();
      let identical = true;
      try {
        assertStatesEqual(gs, cs, "");
      } catch {
        identical = false;
      }
      console.log(
        `  ${p.label}: params rel err ${err.toExponential(2)}; state ${
          identical ? "bit-identical" : "differs"
        }`,
      );
      assert.ok(err <= p.tol, `rel err ${err} > ${p.tol}`);
      assert.deepEqual(
        { ...await gpu.status(), lastNonFiniteTensor: undefined },
        { ...await cpu.status(), lastNonFiniteTensor: undefined },
      );
    } finally {
      gpu.close();
      cpu.close();
    }
  });

  Deno.test(`cpu↔gpu: state dicts and checkpoints load across backends [${p.label}]`, () =>
    withTempDir(async (dir) => {
      for (const [from, to] of [[p.gpu, p.cpu], [p.cpu, p.gpu]]) {
        const data = randomData(24, lengths);
        const a = make(from, tensorsOf(data), opts(from));
        let b: Handle | undefined;
        let c: Handle | undefined;
        try {
          run(a, 24, 10);
          const mid = await a.params();
          b = make(to, tensorsOf(mid), opts(to));
          b.loadStateDict(await a.stateDict());
          await a.save(`${dir}/a.ckpt`);
          c = make(to, tensorsOf(mid), opts(to));
          await c.load(`${dir}/a.ckpt`);
          for (const h of [a, b, c]) run(h, 24, 5, 10);
          const want = await a.params();
          const what = `${from.id} → ${to.id}`;
          const err = relErr(await b.params(), want);
          assert.ok(err <= p.tol, `${what}: rel err ${err} > ${p.tol}`);
          assertBitsEqual(
            await c.params(),
            await b.params(),
            `${what} file vs dict`,
          );
          const sa = await a.status();
          const sb = await b.status();
          assert.deepEqual(
            [sb.step, sb.calls, sb.skipped],
            [sa.step, sa.calls, sa.skipped],
          );
        } finally {
          a.close();
          b?.close();
          c?.close();
        }
      }
    }));
}

// ---------------------------------------------------------------------------
// nonFinite "unchecked" (Adam, AdamW, AMSGrad): no search for non-finite
// gradients, the same arithmetic.

// The Adam family's twins agree bit for bit where the device's '/' and sqrt
// are IEEE-exact, as on llvmpipe in CI (see tests/optim_adam_test.ts);
// elsewhere within each pair's tolerance.
const IEEE = hasIeeeArithmetic(device);
const ADAM_PAIRS = PAIRS.filter((p) => p.gpu.family !== "MicroAdam");
const UNCHECKED_LENGTHS = [3, 1000, 4097];

function uncheckedOptions(s: Spec, nonFinite: "skip" | "unchecked") {
  return {
    lr: s.lr / 10,
    weightDecay: s.family === "Adam" ? 0.01 : s.family === "AMSGrad" ? 0 : 0.02,
    nonFinite,
  };
}

/** The state buffers as f32 values, one array per tensor and buffer. */
function stateValues(s: OptimizerState): Float32Array[] {
  return s.tensors.flatMap((t) =>
    Object.keys(t.buffers).sort().map((k) =>
      new Float32Array(t.buffers[k].slice().buffer)
    )
  );
}

/** A copy of `a` with every NaN the same NaN (payloads may differ). */
function canonical(a: Float32Array): Float32Array {
  return a.map((x) => Number.isNaN(x) ? NaN : x);
}

/**
 * GPU and CPU values agree: the same non-finite values at the same places,
 * and the rest bit for bit (NaN payloads aside) on an IEEE device, within
 * `tol` elsewhere.
 */
function assertTwins(
  gpu: Float32Array[],
  cpu: Float32Array[],
  tol: number,
  what: string,
): void {
  assert.equal(gpu.length, cpu.length, `${what}: arrays`);
  gpu.forEach((g, i) => {
    const c = cpu[i];
    for (let j = 0; j < c.length; j++) {
      if (Number.isFinite(c[j]) && Number.isFinite(g[j])) continue;
      assert.ok(
        Object.is(g[j], c[j]),
        `${what}: array ${i} element ${j} is ${g[j]} on the GPU, ${
          c[j]
        } on the CPU`,
      );
    }
  });
  if (IEEE) {
    assertBitsEqual(gpu.map(canonical), cpu.map(canonical), what);
    return;
  }
  const finite = (a: Float32Array[]) =>
    a.map((x) => x.map((v) => Number.isFinite(v) ? v : 0));
  const err = relErr(finite(gpu), finite(cpu));
  assert.ok(err <= tol, `${what}: rel err ${err} > ${tol}`);
}

for (const p of ADAM_PAIRS) {
  Deno.test(`cpu↔gpu: nonFinite "unchecked" on finite gradients is bit-identical to "skip", and the twins agree; states load across policies [${p.label}]`, async () => {
    const data = randomData(25, UNCHECKED_LENGTHS);
    const handles: Handle[] = [];
    try {
      for (const s of [p.gpu, p.cpu]) {
        for (const policy of ["unchecked", "skip"] as const) {
          handles.push(
            make(s, tensorsOf(data), uncheckedOptions(s, policy)),
          );
        }
      }
      const [gu, gs, cu, cs] = handles;
      for (const h of handles) run(h, 25, 10);
      // The policy changes no arithmetic, on either backend.
      for (const [u, k, what] of [[gu, gs, "GPU"], [cu, cs, "CPU"]] as const) {
        assertBitsEqual(
          await u.params(),
          await k.params(),
          `${what} params, "unchecked" vs "skip"`,
        );
        assertStatesEqual(
          await u.stateDict(),
          await k.stateDict(),
          `${what} state, "unchecked" vs "skip"`,
        );
        assert.deepEqual(await u.status(), { step: 10, calls: 10, skipped: 0 });
      }
      assertTwins(await gu.params(), await cu.params(), p.tol, "params");
      assertTwins(
        stateValues(await gu.stateDict()),
        stateValues(await cu.stateDict()),
        p.tol,
        "state",
      );
      // The policy is not part of the state: "unchecked" states load into
      // "skip" optimizers of the other backend, and those go on alike.
      gs.loadStateDict(await cu.stateDict());
      cs.loadStateDict(await gu.stateDict());
      for (const h of handles) run(h, 25, 3, 10);
      assertTwins(await gs.params(), await cu.params(), p.tol, "loaded GPU");
      assertTwins(await gu.params(), await cs.params(), p.tol, "loaded CPU");
      assert.deepEqual(await gs.status(), { step: 13, calls: 13, skipped: 0 });
    } finally {
      for (const h of handles) h.close();
    }
  });

  // A NaN or ±Infinity gradient poisons its coordinate; one of 2^62 (past
  // the 2^60 that "skip" refuses) is simply applied.
  for (const bad of [NaN, Infinity, -Infinity, 2 ** 62]) {
    const label = bad === 2 ** 62 ? "2^62" : String(bad);
    Deno.test(`cpu↔gpu: nonFinite "unchecked" lets a ${label} gradient through: the twins agree, no step is skipped, the other coordinates step as usual [${p.label}]`, async () => {
      const data = randomData(26, UNCHECKED_LENGTHS);
      const o = (s: Spec) => uncheckedOptions(s, "unchecked");
      const gpu = make(p.gpu, tensorsOf(data), o(p.gpu));
      const cpu = make(p.cpu, tensorsOf(data), o(p.cpu));
      // The same gradients with 0 at the bad coordinate: Adam works
      // coordinate by coordinate, so every other one must come out the same.
      const clean = make(p.cpu, tensorsOf(data), o(p.cpu));
      const [T, J] = [1, 500];
      try {
        for (let t = 0; t < 6; t++) {
          const g = gradsAt(26, t, UNCHECKED_LENGTHS);
          const g0 = gradsAt(26, t, UNCHECKED_LENGTHS);
          if (t === 3) {
            g[T][J] = bad;
            g0[T][J] = 0;
          }
          gpu.setGrads(g);
          cpu.setGrads(g);
          clean.setGrads(g0);
          for (const h of [gpu, cpu, clean]) h.step();
        }
        for (const h of [gpu, cpu]) {
          assert.deepEqual(await h.status(), { step: 6, calls: 6, skipped: 0 });
        }
        const gp = await gpu.params();
        const cp = await cpu.params();
        const gState = await gpu.stateDict();
        const cState = await cpu.stateDict();
        assertTwins(gp, cp, p.tol, "params");
        assertTwins(stateValues(gState), stateValues(cState), p.tol, "state");
        const expected = Number.isFinite(bad) ? "finite" : "non-finite";
        for (const [what, x] of [["GPU", gp[T][J]], ["CPU", cp[T][J]]]) {
          assert.equal(
            Number.isFinite(x) ? "finite" : "non-finite",
            expected,
            `${what} parameter at the coordinate: ${x}`,
          );
        }
        // Every other coordinate, parameters and moments, as in the clean run.
        const cleanParams = await clean.params();
        const cleanState = stateValues(await clean.stateDict());
        const perTensor = cleanState.length / cleanParams.length;
        // Arrays (`per` to a tensor) without the bad coordinate.
        const drop = (a: Float32Array[], per = 1) =>
          a.map((x, i) =>
            Math.floor(i / per) === T ? x.filter((_, j) => j !== J) : x
          );
        assertBitsEqual(drop(cp), drop(cleanParams), "CPU params elsewhere");
        assertTwins(drop(gp), drop(cleanParams), p.tol, "GPU params elsewhere");
        assertBitsEqual(
          drop(stateValues(cState), perTensor),
          drop(cleanState, perTensor),
          "CPU state elsewhere",
        );
        if (!Number.isFinite(bad)) {
          // A state with non-finite moments is refused, as any damaged one.
          expectError(
            () => clean.loadStateDict(cState),
            CheckpointError,
            /expected a finite number/,
          );
        }
      } finally {
        gpu.close();
        cpu.close();
        clean.close();
      }
    });
  }
}
