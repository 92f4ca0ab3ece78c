/** src/core/state_checks.ts: the values a loaded state may hold, named where they are not. */

import assert from "node:assert/strict";
import { CheckpointError } from "../src/errors.ts";
import { microAdamGeometry } from "../src/core/geometry.ts";
import type { OptimizerState } from "../src/core/state.ts";
import {
  checkAdamState,
  checkF32Buffer,
  checkMicroAdamState,
} from "../src/core/state_checks.ts";

function state(
  buffers: Record<string, Uint8Array>,
  extra: Partial<OptimizerState> = {},
): OptimizerState {
  return {
    optimizer: "X",
    config: {},
    step: 3,
    calls: 3,
    skipped: 0,
    ring: 0,
    tensors: [{ name: "w", length: 4, buffers }],
    ...extra,
  };
}

const f32 = (...v: number[]) => new Uint8Array(new Float32Array(v).buffer);
const u32 = (...v: number[]) => new Uint8Array(new Uint32Array(v).buffer);

function throwsCheckpoint(f: () => unknown, pattern: RegExp): void {
  assert.throws(
    f,
    (e: unknown) => e instanceof CheckpointError && pattern.test(e.message),
  );
}

Deno.test("checkF32Buffer: NaN, ±Inf, and negatives where forbidden, by tensor and element; unaligned bytes read right", () => {
  checkF32Buffer(state({ m: f32(1, -2, 0, -0) }), "m");
  throwsCheckpoint(
    () => checkF32Buffer(state({ m: f32(1, NaN) }), "m"),
    /tensor 0 \("w"\): state buffer "m" holds NaN at element 1/,
  );
  throwsCheckpoint(
    () => checkF32Buffer(state({ m: f32(-Infinity) }), "m"),
    /-Infinity at element 0/,
  );
  throwsCheckpoint(
    () => checkF32Buffer(state({ v: f32(0, 1, -1e-30) }), "v", true),
    /-1.0000000031710769e-30 at element 2; expected a finite number >= 0/,
  );
  const odd = new Uint8Array(9);
  odd.set(f32(1, NaN), 1);
  throwsCheckpoint(
    () => checkF32Buffer(state({ m: odd.subarray(1) }), "m"),
    /NaN at element 1/,
  );
});

Deno.test("checkAdamState: moments finite, second moments >= 0, ring 0", () => {
  const ok = {
    expAvg: f32(-1, 1),
    expAvgSq: f32(0, 2),
    maxExpAvgSq: f32(1, 2),
  };
  checkAdamState(state(ok));
  throwsCheckpoint(
    () => checkAdamState(state(ok, { ring: 1 })),
    /ring: expected 0/,
  );
  throwsCheckpoint(
    () => checkAdamState(state({ ...ok, maxExpAvgSq: f32(1, -2) })),
    /"maxExpAvgSq" holds -2/,
  );
});

Deno.test("checkMicroAdamState: ring = step mod m, window indices inside blocks and distinct within the rows in use, values finite, EF ranges finite with min <= max", () => {
  const g = microAdamGeometry(4, {
    window: 2,
    density: 0.5,
    topkBlockSize: 4,
    efBlockSize: 2,
  });
  const bf = (x: number) =>
    new Uint32Array(new Float32Array([x]).buffer)[0] >>> 16;
  const good = {
    window: u32(1 | (bf(0.5) << 16), 3, 0, 2),
    codes: u32(0),
    stats: u32(bf(-1) | (bf(1) << 16), 0, 0),
  };
  checkMicroAdamState(state(good, { ring: 1 }), [g]);
  throwsCheckpoint(
    () => checkMicroAdamState(state(good, { ring: 0 }), [g]),
    /ring: expected 1 \(step mod window\), got 0/,
  );
  throwsCheckpoint(
    () =>
      checkMicroAdamState(
        state({ ...good, window: u32(4, 0, 0, 0) }, { ring: 1 }),
        [g],
      ),
    /window entry 0 has index 4, outside its block of 4 elements/,
  );
  // Row 1 repeats index 3: an error once the row is in use (step >= 2),
  // not while it is still unwritten (step 1: only row 0 is read).
  const repeated = { ...good, window: u32(1 | (bf(0.5) << 16), 2, 3, 3) };
  throwsCheckpoint(
    () => checkMicroAdamState(state(repeated, { ring: 1 }), [g]),
    /window entry 3 repeats index 3 within its row \(slot 1 of block 0\)/,
  );
  checkMicroAdamState(state(repeated, { step: 1, calls: 1, ring: 1 }), [g]);
  throwsCheckpoint(
    () =>
      checkMicroAdamState(
        state({ ...good, window: u32(1 | (0x7fc0 << 16), 0, 0, 0) }, {
          ring: 1,
        }),
        [g],
      ),
    /window entry 0 holds NaN/,
  );
  throwsCheckpoint(
    () =>
      checkMicroAdamState(
        state({ ...good, stats: u32(bf(1) | (bf(-1) << 16), 0, 0) }, {
          ring: 1,
        }),
        [g],
      ),
    /EF block 0 has min 1 and max -1/,
  );
  throwsCheckpoint(
    () =>
      checkMicroAdamState(
        state({ ...good, stats: u32(0, 0x7f80 << 16, 0) }, { ring: 1 }),
        [g],
      ),
    /EF block 1 has min 0 and max Infinity/,
  );
});
