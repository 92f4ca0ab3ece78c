/**
 * The optimizer matrix (tests/optimizers.ts), CPU <-> GPU: the twins agree on
 * the same data, and their states load across backends.
 */

import assert from "node:assert/strict";
import {
  type AnyOptions,
  assertBitsEqual,
  assertStatesEqual,
  type DType,
  type Family,
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
