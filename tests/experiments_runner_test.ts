/**
 * The experiments' runner, optimizer registry and compression meter: the
 * registry builds the project's optimizers (same trajectories as the
 * classes), q and ω against hand-computed cases, plots and the GPU runners
 * against the CPU.
 */

import assert from "node:assert/strict";
import { rng } from "./rng.ts";
import { testDevice } from "./gpu_util.ts";
import {
  boxProjection,
  evenSteps,
  logSteps,
  optimize,
} from "../src/experiments/runner.ts";
import {
  makeOptimizer,
  OPTIMIZER_NAMES,
  type OptimizerName,
} from "../src/experiments/optimizers.ts";
import {
  CompressionMeter,
  measureCompression,
} from "../src/experiments/compression.ts";
import {
  contourTrajectories,
  lineChart,
  phaseDiagram,
} from "../src/experiments/plots.ts";
import { NoisyQuadratic, OnlineLinear } from "../src/experiments/objectives.ts";
import {
  runNoisyQuadraticGpu,
  runOnlineLinearGpu,
} from "../src/experiments/gpu.ts";
import { AdamCpu, AMSGradCpu } from "../src/reference/adam.ts";
import { MicroAdamCpu } from "../src/reference/microadam.ts";
import { MicroAdamTheoryCpu } from "../src/reference/microadam_theory.ts";
import type { CpuTensor } from "../src/reference/cpu_optimizer.ts";
import { InvalidOptionError } from "../src/errors.ts";

Deno.test("optimize: steps, projection, records at the asked steps", () => {
  const seen: number[] = [];
  const x = optimize({
    x0: [0.5, -0.5],
    optimizer: (t) => new AdamCpu([t], { lr: 0.1 }),
    gradient: (_x, _t, g) => g.set([-1, 1]),
    steps: 30,
    project: boxProjection(-1, 1),
    record: (t) => seen.push(t),
    at: [0, 5, 30],
  });
  assert.deepEqual(seen, [0, 5, 30]);
  assert.deepEqual(Array.from(x), [1, -1]); // pushed to the box's corner, and held there
  assert.deepEqual(evenSteps(100, 4), [25, 50, 75, 100]);
  assert.deepEqual(evenSteps(3, 10), [1, 2, 3]);
  assert.deepEqual(logSteps(100, 2), [1, 3, 10, 32, 100]);
});

/** Final parameters after 25 steps of `make` on a fixed gradient stream. */
function trajectory(make: (t: CpuTensor) => { step(): boolean }): Float32Array {
  const u = rng(11);
  return optimize({
    x0: new Float32Array(64),
    optimizer: make,
    gradient: (_x, _t, g) =>
      g.set(g.map(() => (u() - 0.5) * (u() < 0.1 ? 20 : 1))),
    steps: 25,
  });
}

Deno.test("makeOptimizer: the names build the project's optimizers, observed or not", () => {
  const s = { lr: 0.01, density: 0.1, efBlockSize: 16 };
  const same: [OptimizerName, (t: CpuTensor) => { step(): boolean }][] = [
    ["Adam", (t) => new AdamCpu([t], { lr: s.lr })],
    ["AMSGrad", (t) => new AMSGradCpu([t], { lr: s.lr })],
    ["µA", (t) => new MicroAdamCpu([t], s)],
    ["µA-th", (t) => new MicroAdamTheoryCpu([t], s)],
  ];
  for (const [name, make] of same) {
    const want = trajectory(make);
    assert.deepEqual(
      trajectory((t) => makeOptimizer(name, [t], s)),
      want,
      name,
    );
    // With an observer the ablation twin runs: the trajectory is the same.
    if (name.startsWith("µA")) {
      const meter = new CompressionMeter();
      assert.deepEqual(
        trajectory((t) =>
          makeOptimizer(name, [t], { ...s, observer: meter.observer })
        ),
        want,
        `${name} observed`,
      );
      assert.equal(meter.samples.length, 25);
    }
  }
  // Every name builds and differs from plain µA where it should.
  const mu = trajectory((t) => makeOptimizer("µA", [t], s));
  for (const name of OPTIMIZER_NAMES) {
    const x = trajectory((t) => makeOptimizer(name, [t], s));
    assert.ok(x.every(Number.isFinite), name);
    if (name === "µA+max" || name === "W" || name === "TopK-noEF") {
      assert.notDeepEqual(x, mu, name);
    }
  }
  assert.throws(
    () => makeOptimizer("Adamax" as OptimizerName, [], s),
    (e: unknown) =>
      e instanceof InvalidOptionError && /got "Adamax"/.test(e.message),
  );
  assert.throws(
    () =>
      makeOptimizer("µA-th", [{
        param: new Float32Array(2),
        grad: new Float32Array(2),
      }], {
        ...s,
        errorFeedback: "shipped",
      }),
    InvalidOptionError,
  );
});

Deno.test("compression: q and ω by hand; top-k without EF has ω = 1, dense EF ω = 0", () => {
  const m = measureCompression({
    tensor: 0,
    step: 3,
    input: new Float32Array([1, 2, 2]),
    residual: new Float32Array([1, 0, 2]),
    stored: new Float32Array([1, 0, 1]),
  });
  assert.ok(Math.abs(m.q - Math.sqrt(5) / 3) < 1e-15);
  assert.ok(Math.abs(m.omega - 1 / Math.sqrt(5)) < 1e-15);
  for (
    const [ef, omega] of [
      ["none", 1],
      [{ bits: 32, bucketSize: 8 }, 0],
    ] as const
  ) {
    const meter = new CompressionMeter(2);
    const t = { param: new Float32Array(8), grad: new Float32Array(8) };
    const opt = makeOptimizer("µA", [t], {
      lr: 0.01,
      density: 0.25,
      errorFeedback: ef,
      observer: meter.observer,
    });
    const u = rng(2);
    for (let s = 0; s < 10; s++) {
      t.grad.set(t.grad.map(() => u() - 0.5));
      opt.step();
    }
    const sum = meter.summary();
    assert.equal(sum.steps, 6); // steps 1, 2, 4, 6, 8, 10
    assert.equal(sum.omega, omega);
    assert.ok(sum.q > 0 && sum.q < 1);
    assert.equal(sum.conditionHeld, omega === 0 ? 1 : sum.conditionHeld);
  }
});

Deno.test("plots: phase diagram cells, line labels and bands, contour paths", () => {
  const cells = ["a", "b", "c"].flatMap((x) =>
    ["1", "2"].map((y) => ({
      x,
      y,
      value: x === "a" ? -1 : 1,
      panel: y === "1" ? "P" : "Q",
    }))
  );
  const pd = phaseDiagram(cells, {
    xLabel: "β2",
    yLabel: "β1",
    domain: [-1, 1],
  });
  assert.equal(pd.match(/<rect/g)?.length, 6);
  assert.ok(pd.includes(">-1.00<") && pd.includes(">P<") && pd.includes(">Q<"));
  const lc = lineChart([
    {
      name: "µA-th",
      points: [{ x: 1, y: 2, lo: 1, hi: 3 }, { x: 10, y: 1, lo: 0.5, hi: 2 }],
    },
    { name: "fit", dashed: true, points: [{ x: 1, y: 2 }, { x: 10, y: 1 }] },
  ], {
    xLabel: "T",
    yLabel: "y",
    xLog: true,
    yLog: true,
    rules: [{ y: 1.5, label: "d/2" }],
  });
  assert.ok(
    lc.includes(">µA-th<") && lc.includes(">fit<") && lc.includes(">d/2<"),
  );
  assert.ok(lc.includes("stroke-dasharray"));
  const ct = contourTrajectories({
    f: (x, y) => x * x + y * y,
    x: [-1, 1],
    y: [-1, 1],
    paths: [{ name: "p", points: [[1, 1], [0, 0]] }, {
      name: "q",
      points: [[-1, 1], [0, 0]],
    }],
    marks: [{ x: 0, y: 0, label: "min" }],
  });
  assert.ok(ct.includes(">p<") && ct.includes(">q<") && ct.includes(">min<"));
});

Deno.test("GPU runners: MicroAdam on the WGSL kernels tracks MicroAdamCpu on both problems", async () => {
  const device = await testDevice();
  const problem = new OnlineLinear({ spike: 4, base: 1, period: 3, dim: 40 });
  const configs = [0, 0.9].map((b1) => ({
    lr: 0.5,
    betas: [b1, 0.9] as [number, number],
    density: 0.05,
    schedule: (s: number) => 1 / Math.sqrt(s),
  }));
  const T = 60;
  const gpu = await runOnlineLinearGpu(device, {
    problem,
    configs,
    steps: T,
    box: [-1, 1],
    at: [30, T],
  });
  assert.deepEqual([...gpu.keys()], [30, T]);
  configs.forEach((c, i) => {
    const cpu = optimize({
      x0: new Float32Array(40),
      optimizer: (t) => new MicroAdamCpu([t], c),
      gradient: (_x, t, g) => problem.gradientAt(t, g),
      steps: T,
      project: boxProjection(-1, 1),
    });
    const g = gpu.get(T)![i];
    g.forEach((v, j) =>
      assert.ok(Math.abs(v - cpu[j]) < 1e-5, `${v} vs ${cpu[j]}`)
    );
    assert.ok(g.every((v) => v >= -1 && v <= 1));
  });

  const q = new NoisyQuadratic({
    target: new Float32Array(100).fill(1),
    noisy: 50,
    noise: 10,
  });
  const options = { lr: 0.01, density: 0.05, efBlockSize: 32 };
  const ug = rng(5);
  const res = await runNoisyQuadraticGpu(device, {
    problem: q,
    options,
    x0: new Float32Array(100),
    steps: 80,
    noise: (_t, out) => q.drawNoise(ug, out),
    at: [80],
  });
  const uc = rng(5);
  const cpu = optimize({
    x0: new Float32Array(100),
    optimizer: (t) => new MicroAdamCpu([t], options),
    gradient: (x, _t, g) => q.sample(x, uc, g),
    steps: 80,
  });
  const g = res.get(80)!;
  let moved = 0;
  g.forEach((v, j) => {
    assert.ok(Math.abs(v - cpu[j]) < 1e-5, `${j}: ${v} vs ${cpu[j]}`);
    if (v !== 0) moved++;
  });
  assert.ok(moved > 20, `${moved} coordinates moved`);
});
