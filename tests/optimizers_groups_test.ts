/**
 * The optimizer matrix (tests/optimizers.ts), param groups and schedules: per-
 * group lr, weight decay and schedules, mutable between steps.
 */

import assert from "node:assert/strict";
import {
  cosineDecay,
  InvalidOptionError,
  linearWarmup,
  type Schedule,
} from "../mod.ts";
import {
  all,
  assertBitsEqual,
  assertBuffersEqual,
  assertStatesEqual,
  expectError,
  gradsAt,
  make,
  matrix,
  randomData,
  run,
  tensorsOf,
} from "./optimizers.ts";

// Param groups.

matrix(
  "groups: a group with lr/4 moves exactly 1/4 as far (zero start, same gradients)",
  all,
  async (s) => {
    const n = 300;
    const zeros = () => new Float32Array(n);
    const h = make(s, [
      { params: [{ name: "a", data: zeros() }], lr: s.lr },
      { params: [{ name: "b", data: zeros() }], lr: s.lr / 4 },
    ], { weightDecay: 0 });
    try {
      for (let t = 0; t < 6; t++) {
        const [g] = gradsAt(1, t, [n]);
        h.setGrads([g, g]);
        h.step();
        const [a, b] = await h.params();
        assert.ok(a.some((x) => x !== 0), "group 0 moved");
        // Scaling by a power of two commutes with every rounding on the way.
        assertBitsEqual([b], [a.map((x) => x / 4)], `after step ${t + 1}`);
      }
    } finally {
      h.close();
    }
  },
);

matrix(
  "groups: two groups with different lr equal two single-group optimizers",
  all,
  async (s) => {
    const [a0, b0] = randomData(2, [257, 1000]);
    const lrs = [s.lr, s.lr / 3];
    const both = make(s, [
      { params: [{ name: "a", data: a0 }], lr: lrs[0] },
      { params: [{ name: "b", data: b0 }], lr: lrs[1], weightDecay: 0.05 },
    ]);
    const alone = [
      make(s, [{ name: "a", data: a0 }], { lr: lrs[0] }),
      make(s, [{ name: "b", data: b0 }], { lr: lrs[1], weightDecay: 0.05 }),
    ];
    try {
      for (let t = 0; t < 8; t++) {
        const g = gradsAt(2, t, [257, 1000]);
        both.setGrads(g);
        both.step();
        alone.forEach((h, i) => {
          h.setGrads([g[i]]);
          h.step();
        });
      }
      const got = await both.params();
      const want = [(await alone[0].params())[0], (await alone[1].params())[0]];
      assertBitsEqual(got, want, "grouped vs separate");
      const st = await both.stateDict();
      const sep = [await alone[0].stateDict(), await alone[1].stateDict()];
      assertBuffersEqual(
        { ...st, tensors: [st.tensors[0]] },
        sep[0],
        "group 0 state",
      );
      assertBuffersEqual(
        { ...st, tensors: [st.tensors[1]] },
        sep[1],
        "group 1 state",
      );
    } finally {
      both.close();
      for (const h of alone) h.close();
    }
  },
);

matrix(
  "groups: a group with lr 0 leaves its params exactly unchanged (weightDecay 0)",
  all,
  async (s) => {
    const [a0, b0] = randomData(3, [100, 1000]);
    const h = make(s, [
      { params: [{ name: "a", data: a0 }], lr: s.lr },
      { params: [{ name: "b", data: b0 }], lr: 0 },
    ], { weightDecay: 0 });
    try {
      const [, before] = await h.params();
      run(h, 3, 10);
      const [a, b] = await h.params();
      assertBitsEqual([b], [before], "lr-0 group");
      assert.ok(a.some((x, j) => x !== a0[j]), "the other group moved");
    } finally {
      h.close();
    }
  },
);

matrix(
  "groups: changing paramGroups[i].lr between steps takes effect",
  all,
  async (s) => {
    const data = randomData(4, [500]);
    const manual = make(s, tensorsOf(data), { lr: s.lr });
    const scheduled = make(s, tensorsOf(data), {
      lr: s.lr,
      schedule: (c) => (c <= 3 ? 1 : 0.5),
    });
    const frozen = make(s, tensorsOf(data), { lr: s.lr, weightDecay: 0 });
    try {
      run(manual, 4, 3);
      run(scheduled, 4, 3);
      run(frozen, 4, 3);
      manual.paramGroups[0].lr = s.lr / 2;
      frozen.paramGroups[0].lr = 0;
      const atThree = await frozen.params();
      run(manual, 4, 4, 3);
      run(scheduled, 4, 4, 3);
      run(frozen, 4, 4, 3);
      assertBitsEqual(
        await manual.params(),
        await scheduled.params(),
        "lr halved after 3 steps vs schedule ×0.5 from step 4",
      );
      assertStatesEqual(
        await manual.stateDict(),
        await scheduled.stateDict(),
        "state",
      );
      assertBitsEqual(await frozen.params(), atThree, "lr set to 0");
      assert.equal((await frozen.status()).step, 7);
    } finally {
      manual.close();
      scheduled.close();
      frozen.close();
    }
  },
);

// ---------------------------------------------------------------------------
// Schedules.

const SCHEDULES: { label: string; make: () => Schedule }[] = [
  { label: "linearWarmup(4)", make: () => linearWarmup(4) },
  {
    label: "cosineDecay(10, warmup 2, min 0.1)",
    make: () => cosineDecay(10, { warmupSteps: 2, minFactor: 0.1 }),
  },
  {
    label: "custom (c) => [1, 0.3, 0, 2][c % 4]",
    make: () => (c) => [1, 0.3, 0, 2][c % 4],
  },
];

for (const sch of SCHEDULES) {
  matrix(
    `schedules: ${sch.label} equals setting lr by hand before each step (bit-identical)`,
    all,
    async (s) => {
      const data = randomData(5, [3, 1000]);
      const f = sch.make();
      const scheduled = make(s, tensorsOf(data), {
        lr: s.lr,
        schedule: sch.make(),
      });
      const byHand = make(s, tensorsOf(data), { lr: s.lr });
      try {
        for (let t = 0; t < 12; t++) {
          byHand.paramGroups[0].lr = s.lr * f(t + 1);
          for (const h of [scheduled, byHand]) {
            h.setGrads(gradsAt(5, t, h.lengths));
            h.step();
          }
        }
        assertBitsEqual(
          await scheduled.params(),
          await byHand.params(),
          sch.label,
        );
        assertStatesEqual(
          await scheduled.stateDict(),
          await byHand.stateDict(),
          sch.label,
        );
      } finally {
        scheduled.close();
        byHand.close();
      }
    },
  );
}

matrix(
  "schedules: linearWarmup(4)'s first step is exactly 1/4 of the unscheduled one",
  all,
  async (s) => {
    const zero = [new Float32Array(777)];
    const warm = make(s, tensorsOf(zero), {
      lr: s.lr,
      schedule: linearWarmup(4),
    });
    const plain = make(s, tensorsOf(zero), { lr: s.lr });
    try {
      for (const h of [warm, plain]) {
        h.setGrads(gradsAt(6, 0, [777]));
        h.step();
      }
      const [w] = await warm.params();
      const [p] = await plain.params();
      assert.ok(p.some((x) => x !== 0));
      assertBitsEqual([w], [p.map((x) => x / 4)], "warm-up step");
    } finally {
      warm.close();
      plain.close();
    }
  },
);

matrix(
  "schedules: a group's own schedule overrides the optimizer's",
  all,
  async (s) => {
    const [a, b] = randomData(7, [64, 64]);
    const mine: Schedule = (c) => 1 / c;
    const theirs: Schedule = (c) => (c % 2 ? 1 : 0.25);
    const h = make(s, [
      { params: [{ name: "a", data: a }], schedule: mine },
      { params: [{ name: "b", data: b }] },
    ], { lr: s.lr, schedule: theirs });
    const byHand = make(s, [
      { params: [{ name: "a", data: a }] },
      { params: [{ name: "b", data: b }] },
    ], { lr: s.lr });
    try {
      for (let t = 0; t < 6; t++) {
        byHand.paramGroups[0].lr = s.lr * mine(t + 1);
        byHand.paramGroups[1].lr = s.lr * theirs(t + 1);
        for (const x of [h, byHand]) {
          x.setGrads(gradsAt(7, t, x.lengths));
          x.step();
        }
      }
      assertBitsEqual(await h.params(), await byHand.params(), "groups");
    } finally {
      h.close();
      byHand.close();
    }
  },
);

matrix(
  "schedules: a schedule giving NaN or a negative factor throws InvalidOptionError before anything changes",
  all,
  async (s) => {
    const bad = [NaN, -0.5];
    const h = make(s, tensorsOf(randomData(8, [50])), {
      lr: s.lr,
      schedule: (c) => (c <= 2 ? 1 : bad[c - 3]),
    });
    try {
      run(h, 8, 2);
      const before = await h.stateDict();
      const params = await h.params();
      for (const f of bad) {
        h.setGrads(gradsAt(8, 2, h.lengths));
        expectError(
          () => h.step(),
          InvalidOptionError,
          /group 0 lr at step 3/,
          new RegExp(`schedule ${f}`),
        );
        h.paramGroups[0].schedule = (c) => (c <= 2 ? 1 : -0.5);
      }
      assertStatesEqual(await h.stateDict(), before, "after the throws");
      assertBitsEqual(await h.params(), params, "params");
    } finally {
      h.close();
    }
  },
);

// ---------------------------------------------------------------------------

matrix(
  "currentLr(): the group's lr under its schedule at the last step (call 1 before any), on every backend",
  all,
  async (s) => {
    const h = make(s, [
      {
        params: tensorsOf(randomData(3, [40]), "a"),
        lr: 0.1,
        schedule: (t) => 1 / t,
      },
      { params: tensorsOf(randomData(4, [30]), "b"), lr: 0.2 },
    ]);
    try {
      const opt = h.opt as { currentLr(group?: number): number };
      assert.equal(opt.currentLr(), 0.1);
      run(h, 5, 3);
      assert.equal(opt.currentLr(0), 0.1 / 3);
      assert.equal(opt.currentLr(1), 0.2);
      h.paramGroups[1].lr = 0.05;
      assert.equal(opt.currentLr(1), 0.05);
      expectError(
        () => opt.currentLr(2),
        InvalidOptionError,
        /expected an index in \[0, 2\), got 2/,
      );
      await h.status();
    } finally {
      h.close();
    }
  },
);
