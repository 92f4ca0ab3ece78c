/**
 * src/train/optimizer.ts: the schedule of a configuration equals its closed
 * form at every step (linear warm-up t/w; constant 1 or the cosine
 * ½(1 + cos(π (t − w − 1) / (T − w − 1))), exactly 1 after the warm-up and 0
 * at the last step); each optimizer name builds its class with the config's
 * lr, schedule, weight decay (or the class's default) and MicroAdam's
 * window, density and dtype; bad values are typed errors.
 */

import assert from "node:assert/strict";
import {
  Adam,
  AdamW,
  AMSGrad,
  createTensor,
  InvalidOptionError,
  MicroAdam,
  TensorMismatchError,
} from "../mod.ts";
import {
  defaultConfig,
  OPTIMIZERS,
  type TrainConfig,
} from "../src/train/config.ts";
import {
  createOptimizer,
  OPTIMIZER_NAMES,
  scheduleOf,
} from "../src/train/optimizer.ts";
import { testDevice } from "./gpu_util.ts";

/** The factor at step `t` (1-based) of a run of `T` steps, written out. */
function closedForm(
  schedule: TrainConfig["schedule"],
  w: number,
  T: number,
  t: number,
): number {
  if (t <= w) return t / w;
  if (schedule === "constant") return 1;
  const x = Math.min(1, (t - w - 1) / Math.max(1, T - w - 1));
  return 0.5 * (1 + Math.cos(Math.PI * x));
}

function config(values: Partial<TrainConfig>): TrainConfig {
  return { ...defaultConfig(), ...values };
}

Deno.test("scheduleOf: every step equals the closed form; cosine is 1 after the warm-up and 0 at the last step", () => {
  for (const schedule of ["constant", "cosine"] as const) {
    for (const [T, w] of [[1, 0], [2, 0], [11, 0], [12, 2], [50, 7], [9, 8]]) {
      const s = scheduleOf(config({ schedule, warmup_steps: w }), T);
      for (let t = 1; t <= T + 3; t++) {
        const want = closedForm(schedule, w, T, t);
        assert.ok(
          Math.abs(s(t) - want) <= 1e-15,
          `${schedule} T=${T} w=${w} step ${t}: ${s(t)}, expected ${want}`,
        );
      }
      for (let t = 1; t <= w; t++) assert.equal(s(t), t / w); // exact warm-up
      if (schedule === "constant") {
        assert.equal(s(T), 1);
      } else {
        assert.equal(s(w + 1), 1);
        if (T - w >= 2) assert.equal(s(T), 0, `cosine T=${T} w=${w}`);
      }
    }
  }
  // Fixed points, independent of the closed form above.
  const c = scheduleOf(config({ schedule: "cosine", warmup_steps: 0 }), 11);
  assert.ok(Math.abs(c(6) - 0.5) < 1e-15); // halfway
  const q = scheduleOf(config({ schedule: "cosine", warmup_steps: 0 }), 9);
  assert.ok(Math.abs(q(3) - (1 + Math.SQRT1_2) / 2) < 1e-15); // a quarter
  const w = scheduleOf(config({ schedule: "cosine", warmup_steps: 2 }), 12);
  assert.deepEqual([w(1), w(2), w(3), w(12)], [0.5, 1, 1, 0]);
  const k = scheduleOf(config({ schedule: "constant", warmup_steps: 4 }), 9);
  assert.deepEqual([1, 2, 3, 4, 5, 9].map(k), [0.25, 0.5, 0.75, 1, 1, 1]);
});

Deno.test("scheduleOf: a warm-up as long as the run, or a bad step count, is an InvalidOptionError", () => {
  const cases: [Partial<TrainConfig>, number, string][] = [
    [
      { schedule: "cosine", warmup_steps: 10 },
      10,
      "warmup_steps must be less than the run's 10 steps, got 10",
    ],
    [
      { schedule: "constant", warmup_steps: 25 },
      10,
      "warmup_steps must be less than the run's 10 steps, got 25",
    ],
    [{}, 0, "totalSteps: expected an integer >= 1, got 0"],
    [
      { schedule: "constant" },
      2.5,
      "totalSteps: expected an integer >= 1, got 2.5",
    ],
  ];
  for (const [values, T, message] of cases) {
    assert.throws(() => scheduleOf(config(values), T), (e: unknown) => {
      assert.ok(e instanceof InvalidOptionError, `${e}`);
      assert.equal(e.message, message);
      return true;
    });
  }
});

const device = await testDevice();

const CLASSES = {
  microadam: MicroAdam,
  adamw: AdamW,
  amsgrad: AMSGrad,
  adam: Adam,
};
const DEFAULT_DECAY = { microadam: 0, adamw: 0.01, amsgrad: 0, adam: 0 };

Deno.test("createOptimizer: each name builds its class with the config's lr, schedule and weight decay", () => {
  const T = 20;
  for (const name of OPTIMIZERS) {
    for (const weight_decay of [null, 0.05]) {
      const c = config({
        optimizer: name,
        lr: 0.02,
        schedule: "cosine",
        warmup_steps: 3,
        weight_decay,
      });
      const tensors = [createTensor(device, 5), createTensor(device, 3)];
      const opt = createOptimizer(device, tensors, c, T);
      try {
        assert.equal(opt.constructor, CLASSES[name]);
        assert.equal(opt.kind, OPTIMIZER_NAMES[name]);
        assert.equal(opt.paramGroups.length, 1);
        const g = opt.paramGroups[0];
        assert.deepEqual(g.params, tensors);
        assert.equal(g.lr, 0.02);
        assert.equal(g.weightDecay, weight_decay ?? DEFAULT_DECAY[name]);
        assert.ok(g.schedule, `${name}: no schedule`);
        for (let t = 1; t <= T; t++) {
          assert.equal(g.schedule(t), scheduleOf(c, T)(t), `${name} step ${t}`);
        }
        if (opt instanceof Adam) {
          assert.equal(opt.options.amsgrad, name === "amsgrad");
          assert.equal(opt.options.decoupledWeightDecay, name === "adamw");
        }
      } finally {
        opt.dispose();
        for (const t of tensors) {
          t.param.destroy();
          t.grad.destroy();
        }
      }
    }
  }
  assert.deepEqual(Object.keys(OPTIMIZER_NAMES).sort(), [...OPTIMIZERS].sort());
});

Deno.test("createOptimizer: MicroAdam gets window, density and dtype; its lr follows the schedule step by step", async () => {
  const T = 6;
  for (const dtype of ["f32", "bf16"] as const) {
    const c = config({
      optimizer: "microadam",
      lr: 0.004,
      window: 3,
      density: 0.25,
      dtype,
      schedule: "cosine",
      warmup_steps: 2,
    });
    const tensors = [createTensor(device, 64, { dtype })];
    const opt = createOptimizer(device, tensors, c, T);
    try {
      assert.ok(opt instanceof MicroAdam);
      assert.equal(opt.options.window, 3);
      assert.equal(opt.options.density, 0.25);
      assert.equal(opt.options.dtype, dtype);
      assert.equal(opt.options.lr, 0.004);
      for (let t = 1; t <= T; t++) {
        opt.step();
        assert.ok(
          Math.abs(opt.currentLr() - 0.004 * closedForm("cosine", 2, T, t)) <=
            1e-18,
          `${dtype} step ${t}: ${opt.currentLr()}`,
        );
      }
      assert.equal(opt.currentLr(), 0); // the last step
      const status = await opt.status();
      assert.deepEqual([status.step, status.calls, status.skipped], [T, T, 0]);
    } finally {
      opt.dispose();
      tensors[0].param.destroy();
      tensors[0].grad.destroy();
    }
  }
});

Deno.test("createOptimizer: values the optimizer rejects are typed errors", () => {
  const t = createTensor(device, 4);
  try {
    assert.throws(
      () => createOptimizer(device, [t], config({ dtype: "bf16" }), 10),
      TensorMismatchError,
    );
    assert.throws(
      () =>
        createOptimizer(device, [t], config({ optimizer: "adam", lr: -1 }), 10),
      InvalidOptionError,
    );
    assert.throws(
      () => createOptimizer(device, [t], config({ window: 0 }), 10),
      (e: unknown) =>
        e instanceof InvalidOptionError && /window/.test(e.message),
    );
    assert.throws(
      () => createOptimizer(device, [t], config({ warmup_steps: 10 }), 10),
      /warmup_steps must be less than the run's 10 steps/,
    );
  } finally {
    t.param.destroy();
    t.grad.destroy();
  }
});
