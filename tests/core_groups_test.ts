/**
 * src/core/groups.ts: flat tensor lists and param groups, per-group
 * overrides, and groupHyper with schedules (values and validation).
 */

import assert from "node:assert/strict";
import { InvalidOptionError } from "../src/errors.ts";
import {
  groupHyper,
  normalizeGroups,
  type ParamGroup,
} from "../src/core/groups.ts";
import { linearWarmup } from "../src/core/schedule.ts";

function rejects(f: () => unknown, ...parts: string[]): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof InvalidOptionError, `got ${e}`);
    for (const p of parts) {
      assert.ok(e.message.includes(p), `"${e.message}" lacks "${p}"`);
    }
    return true;
  });
}

const defaults = { lr: 0.5, weightDecay: 0.25 };

Deno.test("normalizeGroups: a flat list is one group with the defaults (a copy of the list)", () => {
  const tensors = ["a", "b", "c"];
  const sched = (s: number) => s;
  const g = normalizeGroups(tensors, { ...defaults, schedule: sched });
  assert.equal(g.length, 1);
  assert.deepEqual(g[0], {
    params: ["a", "b", "c"],
    lr: 0.5,
    weightDecay: 0.25,
    schedule: sched,
  });
  assert.notEqual(g[0].params, tensors);
  tensors.push("d");
  assert.equal(g[0].params.length, 3);
});

Deno.test("normalizeGroups: groups with per-group overrides and fallbacks to the defaults", () => {
  const s0 = (_: number) => 2;
  const s1 = (_: number) => 3;
  const specs = [
    { params: ["a"], lr: 0.1 },
    { params: ["b", "c"], weightDecay: 0 },
    { params: ["d"], schedule: s1, lr: 0 },
    { params: ["e"] },
  ];
  const g = normalizeGroups(specs, { ...defaults, schedule: s0 });
  assert.deepEqual(
    g.map((x) => [x.params, x.lr, x.weightDecay, x.schedule]),
    [
      [["a"], 0.1, 0.25, s0],
      [["b", "c"], 0.5, 0, s0],
      [["d"], 0, 0.25, s1],
      [["e"], 0.5, 0.25, s0],
    ],
  );
  assert.notEqual(g[1].params, specs[1].params);
  // Without a default schedule, a group without one has none.
  assert.equal(
    normalizeGroups([{ params: ["x"] }], defaults)[0].schedule,
    undefined,
  );
});

Deno.test("normalizeGroups: errors — mixing tensors and groups, empty lists, empty groups, bad group lr / weightDecay", () => {
  rejects(
    () => normalizeGroups<unknown>(["a", { params: ["b"] }], defaults),
    "params: expected either tensors or groups ({ params: [...] }), not a mix",
  );
  rejects(
    () => normalizeGroups<unknown>([{ params: ["b"] }, "a"], defaults),
    "not a mix",
  );
  rejects(
    () => normalizeGroups([], defaults),
    "params: expected a non-empty array of tensors or groups, got []",
  );
  rejects(
    () => normalizeGroups("abc" as unknown as string[], defaults),
    'got "abc"',
  );
  rejects(
    () => normalizeGroups([{ params: ["a"] }, { params: [] }], defaults),
    "group 1: has no tensors",
  );
  rejects(
    () =>
      normalizeGroups([{ params: ["a"] }, { params: ["b"], lr: -1 }], defaults),
    "group 1 lr: expected a finite number >= 0, got -1",
  );
  rejects(
    () => normalizeGroups([{ params: ["a"], weightDecay: NaN }], defaults),
    "group 0 weightDecay: expected a finite number >= 0, got NaN",
  );
  // A bad default is reported for the group that inherits it.
  rejects(
    () => normalizeGroups(["a"], { lr: Infinity, weightDecay: 0 }),
    "group 0 lr",
    "Infinity",
  );
});

const group = (o: Partial<ParamGroup<string>> = {}): ParamGroup<string> => ({
  params: ["t"],
  lr: 0.1,
  weightDecay: 0.01,
  ...o,
});

Deno.test("groupHyper: lr = base × schedule(call), weight decay as set; the schedule sees the 1-based call", () => {
  assert.deepEqual(groupHyper(group(), 1, 0), { lr: 0.1, weightDecay: 0.01 });
  assert.deepEqual(groupHyper(group(), 1000, 0), {
    lr: 0.1,
    weightDecay: 0.01,
  });
  const calls: number[] = [];
  const g = group({
    lr: 0.5,
    schedule: (s) => {
      calls.push(s);
      return 1 / s;
    },
  });
  assert.deepEqual([1, 2, 4, 5].map((c) => groupHyper(g, c, 0).lr), [
    0.5,
    0.25,
    0.125,
    0.1,
  ]);
  assert.deepEqual(calls, [1, 2, 4, 5]);
  const w = group({ lr: 0.2, schedule: linearWarmup(4) });
  assert.deepEqual([1, 2, 3, 4, 9].map((c) => groupHyper(w, c, 0).lr), [
    0.2 * 0.25,
    0.2 * 0.5,
    0.2 * 0.75,
    0.2,
    0.2,
  ]);
  // A factor of 0 (or base lr 0) is a valid lr of 0.
  assert.equal(groupHyper(group({ schedule: () => 0 }), 3, 0).lr, 0);
  // Groups stay mutable: a change to lr takes effect at the next call.
  const m = group();
  m.lr = 0.3;
  m.weightDecay = 0;
  assert.deepEqual(groupHyper(m, 2, 0), { lr: 0.3, weightDecay: 0 });
});

Deno.test("groupHyper: a schedule giving NaN, a negative or an infinite factor is an InvalidOptionError naming the group and step", () => {
  for (
    const [factor, shown] of [
      [NaN, "NaN"],
      [-0.5, "-0.5"],
      [
        Infinity,
        "Infinity",
      ],
      [2n, "2n"],
      ["1", '"1"'],
    ] as const
  ) {
    rejects(
      () =>
        groupHyper(
          group({
            schedule: (() => factor) as unknown as (s: number) => number,
          }),
          7,
          2,
        ),
      "group 2 lr at step 7",
      `base 0.1 × schedule ${shown}`,
      `got ${shown}`,
    );
  }
  // A schedule that returns nothing.
  rejects(
    () =>
      groupHyper(
        group({
          schedule: (() => undefined) as unknown as (s: number) => number,
        }),
        3,
        1,
      ),
    "group 1 lr at step 3",
    "got undefined",
  );
  // A finite factor whose lr overflows f32.
  rejects(
    () => groupHyper(group({ schedule: () => 1e40 }), 2, 0),
    "group 0 lr at step 2 (base 0.1 × schedule 1e+40): 1.0000000000000001e+39 overflows f32",
  );
  // Invalid values set on a group after construction.
  rejects(
    () => groupHyper(group({ lr: -1 }), 1, 4),
    "group 4 lr: expected a finite number >= 0, got -1",
  );
  rejects(
    () => groupHyper(group({ weightDecay: -0.1 }), 1, 0),
    "group 0 weightDecay: expected a finite number >= 0, got -0.1",
  );
});

Deno.test("normalizeGroups: a group schedule that is not a function is an InvalidOptionError naming the group", () => {
  // The optimizer-level schedule is checked (options.ts); a group's own one
  // must be too, or the first step() fails with a bare TypeError.
  const bad = [{
    params: ["a"],
    schedule: 5 as unknown as (s: number) => number,
  }];
  let thrown: unknown;
  try {
    const g = normalizeGroups(bad, defaults);
    groupHyper(g[0], 1, 0);
  } catch (e) {
    thrown = e;
  }
  assert.ok(
    thrown instanceof InvalidOptionError,
    `expected InvalidOptionError naming group 0's schedule, got ${thrown}`,
  );
  assert.match((thrown as Error).message, /group 0/);
  assert.match((thrown as Error).message, /schedule/);
});

Deno.test("groupHyper: decoupled weight decay with lr·weightDecay >= 1 is an InvalidOptionError (the factor 1 − lr·wd would not stay above 0); L2 decay is not limited", () => {
  rejects(
    () => groupHyper(group({ lr: 2, weightDecay: 0.5 }), 4, 1, true),
    "group 1 at step 4: lr 2 × weightDecay 0.5 = 1",
    "expected lr·weightDecay < 1",
  );
  assert.deepEqual(
    groupHyper(group({ lr: 2, weightDecay: 0.5 }), 4, 1, false),
    {
      lr: 2,
      weightDecay: 0.5,
    },
  );
  assert.equal(
    groupHyper(group({ lr: 1.9, weightDecay: 0.5 }), 1, 0, true).lr,
    1.9,
  );
});
