/**
 * The optimizer matrix (tests/optimizers.ts), shapes and convergence: every
 * optimizer on every shape, and convergence on a convex quadratic.
 */

import assert from "node:assert/strict";
import { make, quadLoss, randomData, SPECS, tensorsOf } from "./optimizers.ts";

// ---------------------------------------------------------------------------
// Shapes and convergence.

const SHAPES = [
  { label: "length 1", lengths: [1] },
  { label: "length 3 (odd)", lengths: [3] },
  { label: "length 1000 (< one top-k block)", lengths: [1000] },
  { label: "length 4097 (a block and one)", lengths: [4097] },
  { label: "five tensors at once", lengths: [2, 3, 130, 1000, 4097] },
];

// Every optimizer and shape runs in lockstep inside one test, so the GPU
// readbacks of a step overlap (each wait for the GPU costs ~10 ms here); the
// verdicts are then reported per optimizer as test steps.
Deno.test(
  "shapes: ½‖p − target‖² at least halves in 100 steps (lengths 1, 3, 1000, 4097, five tensors) [every optimizer]",
  async (t) => {
    const runs = SPECS.flatMap((s) =>
      SHAPES.map((shape, k) => {
        // Every target lies 0.5 to 1.5 away from its start, so even one
        // coordinate has a loss well above the lr-sized noise floor.
        const start = randomData(200 + k, shape.lengths);
        const offset = randomData(100 + k, shape.lengths);
        const targets = start.map((p, i) =>
          p.map((x, j) => {
            const o = offset[i][j];
            return x + Math.sign(o) * (0.5 + Math.abs(o));
          })
        );
        const h = make(s, tensorsOf(start), { lr: s.lr });
        return { s, shape, targets, h, initial: 0, final: 0 };
      })
    );
    try {
      const first = await Promise.all(runs.map((r) => r.h.params()));
      runs.forEach((r, k) => r.initial = quadLoss(first[k], r.targets));
      for (let step = 0; step < 100; step++) {
        const ps = await Promise.all(runs.map((r) => r.h.params()));
        runs.forEach((r, k) => {
          r.h.setGrads(
            ps[k].map((p, i) => p.map((x, j) => x - r.targets[i][j])),
          );
          r.h.step();
        });
      }
      const last = await Promise.all(runs.map((r) => r.h.params()));
      runs.forEach((r, k) => r.final = quadLoss(last[k], r.targets));
      const statuses = await Promise.all(runs.map((r) => r.h.status()));
      for (const s of SPECS) {
        const ratios = runs.filter((r) => r.s === s).map((r) =>
          (r.final / r.initial).toFixed(3)
        );
        console.log(`  ${s.id}: final/initial loss ${ratios.join(", ")}`);
        await t.step(s.id, () => {
          runs.forEach((r, k) => {
            if (r.s !== s) return;
            const st = statuses[k];
            assert.deepEqual(
              [st.step, st.calls, st.skipped],
              [100, 100, 0],
              r.shape.label,
            );
            assert.ok(
              Number.isFinite(r.final) && r.final < 0.5 * r.initial,
              `${r.shape.label}: loss ${r.initial} → ${r.final} (ratio ${
                r.final / r.initial
              }), expected < 0.5×`,
            );
          });
        });
      }
    } finally {
      for (const r of runs) r.h.close();
    }
  },
);

// ---------------------------------------------------------------------------
