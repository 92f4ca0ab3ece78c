/**
 * GPU MicroAdam (src/optim/microadam.ts) against MicroAdamCpu: f32 and bf16 on
 * random data, on both kernel paths, and the kernels' edge configurations.
 */

import assert from "node:assert/strict";
import {
  fastPath,
  type MicroAdam,
  readSelectionHints,
} from "../src/optim/microadam.ts";
import { addErrorFeedback, bf16View } from "../src/reference/microadam.ts";
import { microAdamGeometry } from "../src/core/geometry.ts";
import { u32View } from "../src/core/state_checks.ts";
import type { PlacementOptions } from "../src/optim/gpu_optimizer.ts";
import type { MicroAdamOptions } from "../src/core/options.ts";
import { hasSubgroups } from "../src/gpu/capabilities.ts";
import { FAST_GRID, fastGrid } from "../src/gpu/layout.ts";
import { bf16Bits, roundBf16 } from "../src/numeric/bf16.ts";
import { testSeed } from "./gpu_util.ts";
import {
  groupsOfTensor,
  limitedDevice,
  plainDevice,
  planOf,
  SIZES,
  STRADDLE,
  Twin,
} from "./optim_microadam.ts";

// ---- 1, 2. f32 and bf16 against the CPU reference on random data --------

for (
  const [label, options] of [
    ["defaults (D = Q = 4096)", {}],
    [
      "D = 1000, Q = 300 (EF blocks straddle top-k blocks), m = 7, density 3 %, wd 0.05",
      {
        ...STRADDLE,
        window: 7,
        density: 0.03,
        weightDecay: 0.05,
        lr: 3e-3,
      },
    ],
  ] as const
) {
  Deno.test(`f32: GPU == MicroAdamCpu over 50 steps, sizes ${SIZES.join("/")}, ${label}`, async () => {
    const seed = testSeed(`f32 ${label}`);
    const twin = new Twin({ dtype: "f32", sizes: SIZES, options, seed });
    try {
      for (let s = 1; s <= 50; s++) {
        twin.step();
        await twin.compare(`seed ${seed}, step ${s}`);
      }
      twin.report(`f32 ${label}`);
    } finally {
      twin.dispose();
    }
  });

  Deno.test(`bf16: GPU == MicroAdamCpu over 30 steps, sizes ${SIZES.join("/")}, ${label}`, async () => {
    const seed = testSeed(`bf16 ${label}`);
    const twin = new Twin({ dtype: "bf16", sizes: SIZES, options, seed });
    try {
      for (let s = 1; s <= 30; s++) {
        twin.step();
        await twin.compare(`seed ${seed}, step ${s}`);
      }
      twin.report(`bf16 ${label}`);
    } finally {
      twin.dispose();
    }
  });
}

Deno.test("compare helpers: a one-ulp f32 drift passes, a wrong state or bf16 params fail", async () => {
  // The comparisons above must be able to fail: corrupt one side on purpose.
  const twin = new Twin({ dtype: "bf16", sizes: [3000], seed: 1 });
  try {
    twin.step();
    twin.step();
    await twin.compare("untouched");
    // One window entry differs: the state comparison must notice.
    const state = twin.cpu.stateDict();
    state.tensors[0].buffers.window[7] ^= 0x01; // a value bit of entry 1
    twin.cpu.loadStateDict(state);
    await assert.rejects(twin.compare("corrupted window"), /window: 1 of/);
    twin.cpu.loadStateDict(await twin.gpu.stateDict());
    // 1 % of the params off by 2 ulps: below the 99.9 % bar.
    const p = twin.cpuParams[0] as Uint16Array;
    for (let j = 0; j < 30; j++) p[j * 100] += 2;
    await assert.rejects(twin.compare("params off"), /within 1 ulp/);
  } finally {
    twin.dispose();
  }
});

// ---- Kernel edge paths ------------------------------------------------------

const EDGES: {
  label: string;
  sizes: number[];
  options: MicroAdamOptions & PlacementOptions;
  check?: (opt: MicroAdam) => void;
  gpuDevice?: GPUDevice;
}[] = [
  {
    // Reaching 65536 workgroups for real takes ~9 s a step on llvmpipe (one
    // select workgroup per top-k block costs ~0.13 ms); a device reporting a
    // tiny per-dimension limit folds every dispatch into 2D instead.
    label:
      "maxComputeWorkgroupsPerDimension = 7: every dispatch folded into 2D",
    sizes: [70001, 4097, 300],
    options: { topkBlockSize: 1000, efBlockSize: 300 },
    gpuDevice: limitedDevice({ maxComputeWorkgroupsPerDimension: 7 }),
  },
  {
    label:
      "maxBindingBytes 4096, density 1, m = 4: the window, not the params, limits the chunk size",
    sizes: [3001, 17],
    options: {
      topkBlockSize: 8,
      density: 1,
      window: 4,
      maxBindingBytes: 4096,
      gatherBelow: 0,
    },
    check: (opt) => {
      const plan = planOf(opt);
      // 16 B of window per element: chunks of at most 4064 / 16 elements.
      assert.ok(groupsOfTensor(plan, 0) >= Math.ceil(3001 / 254));
    },
  },
  {
    label: "Q = 6: ~680 EF blocks per top-k block (global atomics path)",
    sizes: [70001, 4097, 9],
    options: { efBlockSize: 6 },
  },
  {
    label: "D = 65536: block-local indices up to 0xffff",
    sizes: [70001, 65536],
    options: { topkBlockSize: 65536, density: 0.002 },
  },
  {
    label: "m = 1, density 1: everything selected, EF stays zero",
    sizes: [1000, 7],
    options: { window: 1, density: 1 },
  },
  {
    label:
      "a device without subgroups: one-pass and general kernels reduce in workgroup memory",
    sizes: [70001, 8192, 4096, 999],
    options: { weightDecay: 0.02 },
    check: (opt) => assert.equal(hasSubgroups(opt.device), false),
    gpuDevice: plainDevice,
  },
  {
    label:
      "m · k = 512 (m = 8, k = 64): the largest window the one-pass update holds",
    sizes: [8192, 4096, 100],
    options: { window: 8, density: 64 / 4096 },
    check: (opt) => assert.ok(opt.geometry.every(fastPath)),
  },
  {
    label:
      "more blocks than FAST_GRID.select: each select workgroup (and bf16 update workgroup) walks two blocks, the last one one",
    sizes: [FAST_GRID.select * 16 + 300 * 16 + 5, 40],
    options: { topkBlockSize: 16, efBlockSize: 16, density: 2 / 16 },
    check: (opt) => {
      assert.ok(opt.geometry.every(fastPath));
      const blocks = opt.geometry[0].blocks;
      assert.ok(blocks > FAST_GRID.select);
      // An odd count: the last workgroup walks one block, the others two.
      assert.equal(
        fastGrid("select", blocks, opt.options.dtype),
        Math.ceil(blocks / 2),
      );
      // The update walks two too in bf16; in f32 one a workgroup.
      assert.equal(
        fastGrid("update", blocks, opt.options.dtype),
        opt.options.dtype === "bf16" ? Math.ceil(blocks / 2) : blocks,
      );
      assert.equal(blocks % 2, 1);
    },
  },
  {
    label: "D = 3, Q = 2, density 0.5, m = 2 on tiny tensors",
    sizes: [1, 2, 3, 999],
    options: { topkBlockSize: 3, efBlockSize: 2, density: 0.5, window: 2 },
  },
];

for (const dtype of ["f32", "bf16"] as const) {
  Deno.test(`edge configurations, ${dtype}: == CPU`, async () => {
    for (const e of EDGES) {
      const seed = testSeed(`edge ${dtype} ${e.label}`);
      const twin = new Twin({
        dtype,
        sizes: e.sizes,
        seed,
        options: { ...e.options, lr: 1e-2 },
        gpuDevice: e.gpuDevice,
      });
      try {
        e.check?.(twin.gpu);
        for (let s = 1; s <= 4; s++) {
          twin.step();
          await twin.compare(`${e.label}: seed ${seed}, step ${s}`);
        }
        twin.report(`edge ${dtype} ${e.label}`);
      } finally {
        twin.dispose();
      }
    }
  });
}

// ---- The one-pass selection on data that random values rarely produce ------

/**
 * Gradients that drive `microadam_select_fast` through each of its ways to
 * the k-th largest |a| (3 full blocks and a tail; k = 41 per block): more
 * candidates than its list holds, so that radix digits find T (down to the
 * last bit where every key ties), more equal keys at the threshold than
 * entries left to place (only the first by index are kept, and they lie in
 * both halves of the block), ties at the threshold of both signs (the
 * residual's range), the k-th largest 4 or 5 octaves below the block
 * maximum, a candidate bound that is exactly tight, and a maximum far above
 * the rest.
 */
const HARD_SELECTIONS: {
  label: string;
  value: (j: number, r: () => number) => number;
}[] = [
  { label: "every gradient 0.5 (4096 ties per block)", value: () => 0.5 },
  {
    label: "magnitudes uniform in one octave [1, 2), random signs",
    value: (_, r) => (r() < 0.5 ? -1 : 1) * (1 + r()),
  },
  {
    label: "zero but every 200th element (T = 0, tied zeros kept by index)",
    value: (j, r) => (j % 200 === 7 ? 1 + r() : 0),
  },
  {
    label: "four magnitudes, 1, 1.5, 2 and 3 (ties at the threshold)",
    value: (_, r) => [1, 1.5, 2, 3][Math.floor(4 * r())] * (r() < 0.5 ? -1 : 1),
  },
  {
    label: "2000 ties at the threshold, 8 of them in the block's first half",
    value: (j, r) => {
      const b = j % 4096;
      if (b % 400 === 3) return 1;
      return b < 2040 ? 1e-3 * (1 + r()) : 0.5;
    },
  },
  {
    // 40 values near 2 and four ties at |a| = 1.5 over small ones: k = 41
    // keeps the first tie, the only negative one, and leaves three positive
    // ones in the residual. Few enough candidates for the candidate list from
    // the second step on (the hint): a range that took the kept tie's -1.5,
    // or missed the others' 1.5, gives other codes.
    label: "four ties at the threshold, the kept one the only negative",
    value: (j, r) => {
      const b = j % 4096;
      if (b % 100 === 50 && b < 4000) return 2 + r();
      if (b % 1000 === 7) return b === 7 ? -1.5 : 1.5;
      return (r() < 0.5 ? -1e-3 : 1e-3) * (1 + r());
    },
  },
  ...[5, 3].map((jump) => ({
    // Threads 12, 25, ... of a block read 15 values near 2^-jump (or one
    // there and 14 an octave lower, for jump 3), then one near 1; all other
    // values are tiny. The k-th largest lies 5 or 4 octaves below the block
    // maximum (written for the octave counters that bf16 had until round 29;
    // kept for candidates whose keys span several octaves).
    label: `the k-th largest ${jump === 5 ? 5 : 4} octaves below the maximum`,
    value: (j: number, r: () => number) => {
      const b = j % 4096;
      if (b % 208 === 207) return 1 + r();
      if (Math.floor(b / 16) % 13 !== 12) return 2 ** -20 * (1 + r());
      const octave = jump === 3 && b % 16 !== 0 ? jump + 1 : jump;
      return 2 ** -octave * (1 + r());
    },
  })),
  {
    // Thread t of a block (16 values each) holds one value t % 8 + 1 and
    // 15 tiny ones: the thread maxima repeat 1..8, so the kernel's bound
    // (in each subgroup, the ceil(k / subgroups)-th largest thread maximum)
    // leaves exactly enough candidates; a bound one rank higher leaves too
    // few.
    label: "thread maxima 1..8 repeating (the candidate bound is tight)",
    value: (j, r) => {
      const b = j % 4096;
      const sign = r() < 0.5 ? -1 : 1;
      return sign *
        (b % 16 === 5 ? Math.floor(b / 16) % 8 + 1 : 1e-3 * (1 + r()));
    },
  },
  {
    label: "three 1e10 outliers per block over values near 1e-30",
    value: (j, r) => (j % 4096 < 3 ? 1e10 : 1e-30 * (1 + r())),
  },
];

for (const dtype of ["f32", "bf16"] as const) {
  Deno.test(`one-pass selection on hard data, ${dtype}: == CPU`, async () => {
    const n = 3 * 4096 + 1000;
    for (const h of HARD_SELECTIONS) {
      const seed = testSeed(`hard ${dtype} ${h.label}`);
      const twin = new Twin({ dtype, sizes: [n], seed, options: { lr: 1e-2 } });
      try {
        assert.ok(twin.gpu.geometry.every(fastPath));
        for (let s = 1; s <= 3; s++) {
          const g = new Float32Array(n);
          for (let j = 0; j < n; j++) g[j] = h.value(j, twin.r);
          twin.step([dtype === "f32" ? g : toBf16(g)]);
          await twin.compare(`${h.label}: seed ${seed}, step ${s}`);
        }
      } finally {
        twin.dispose();
      }
    }
  });
}

// The one-pass select kernel keeps each block's selection hint from the step
// before (kernels/microadam_select_fast.wgsl): here every step's data differ
// from the last one's, so the hints mark too few (the data shrank: the bound
// marks again), too many (it grew: past the candidate list), or ties; the
// hard selections above follow one another on one optimizer.
for (const dtype of ["f32", "bf16"] as const) {
  Deno.test(`one-pass selection, hints from other data, ${dtype}: == CPU`, async () => {
    const n = 12 * 4096 + 1000;
    const seed = testSeed(`hints ${dtype}`);
    const twin = new Twin({ dtype, sizes: [n], seed, options: { lr: 1e-2 } });
    const spread = (scale: number) => (_: number, r: () => number) =>
      scale * (r() - 0.5) * 2 ** -Math.floor(12 * r());
    // Grown 1000 times, a block marks about 3700 candidates at its hint,
    // lists 256 of them, and lists again at the bound (the kernel clears the
    // list in between); shrunk, it marks too few and lists again.
    const steps = [
      ...Array.from({ length: 8 }, (_, i) => ({
        label: `spread, ${i % 2 ? "1e3 larger" : "as first"}`,
        value: spread(i % 2 ? 1e3 : 1),
      })),
      { label: "spread, 1e6 smaller", value: spread(1e-3) },
      { label: "spread, 1.3 times larger", value: spread(1.3e-3) },
      ...HARD_SELECTIONS,
      { label: "spread again", value: spread(1) },
    ];
    try {
      assert.ok(twin.gpu.geometry.every(fastPath));
      for (const [s, h] of steps.entries()) {
        const g = new Float32Array(n);
        for (let j = 0; j < n; j++) g[j] = h.value(j, twin.r);
        twin.step([dtype === "f32" ? g : toBf16(g)]);
        await twin.compare(`${h.label}: seed ${seed}, step ${s + 1}`);
      }
    } finally {
      twin.dispose();
    }
  });
}

// What the select kernel keeps as each block's hint, and how often the next
// step can use it: each step's a = g + e comes from the CPU twin's state
// before the step, and every block whose hint (read before the step) marks
// between k and the candidate list's 256 values must leave as its next hint
// the |a| of its (k + k/2 + 8)-th largest (69 at k = 41), or, marking fewer
// than that, its hint lowered by 2^20 in f32 bits. On data of one
// distribution (the benchmark's), nearly every block takes that path.
for (const dtype of ["f32", "bf16"] as const) {
  Deno.test(`one-pass selection hints: the rank k + k/2 + 8 of the step before, used by nearly every block, ${dtype}`, async () => {
    const n = 24 * 4096;
    const seed = testSeed(`hint values ${dtype}`);
    const twin = new Twin({ dtype, sizes: [n], seed, options: { lr: 1e-2 } });
    try {
      const geo = twin.gpu.geometry[0];
      assert.ok(fastPath(geo));
      const k = geo.kBlock;
      const rank = k + (k >> 1) + 8;
      const rnd = dtype === "bf16" ? roundBf16 : (x: number) => x;
      let hints = await readSelectionHints(twin.gpu);
      assert.deepEqual(Array.from(hints), new Array(geo.efBlocks).fill(0));
      let used = 0;
      const steps = 6;
      for (let s = 1; s <= steps; s++) {
        const g = new Float32Array(n);
        for (let j = 0; j < n; j++) {
          g[j] = 1e-2 * (twin.r() - 0.5) * 2 ** -Math.floor(12 * twin.r());
        }
        const bits = toBf16(g);
        const grad = dtype === "f32" ? g : bf16View(bits);
        const { buffers } = twin.cpu.stateDict().tensors[0];
        const a = addErrorFeedback(
          geo,
          {
            codes: u32View(buffers.codes),
            stats: u32View(buffers.stats),
          },
          grad,
          rnd,
        );
        twin.step([dtype === "f32" ? g : bits]);
        await twin.compare(`hint values: seed ${seed}, step ${s}`);
        const next = await readSelectionHints(twin.gpu);
        const abs = new Uint32Array(a.buffer).map((x) => x & 0x7fffffff);
        // (The EF statistics have one pair more than blocks here, as the
        // authors' layout: floor(d / Q) + 1. Its hint stays 0.)
        for (let b = 0; b < geo.blocks; b++) {
          const keys = abs.slice(b * 4096, (b + 1) * 4096);
          const marked = keys.filter((x) => x >= hints[b]).length;
          if (hints[b] === 0 || marked < k || marked > 256) continue;
          used++;
          const expected = marked >= rank
            ? keys.sort().reverse()[rank - 1]
            : hints[b] - 2 ** 20;
          assert.equal(
            next[b],
            expected,
            `step ${s}, block ${b}: hint ${hints[b]} marked ${marked}`,
          );
        }
        hints = next;
      }
      // Every block after the first step, but for a few misses.
      const chances = (steps - 1) * geo.blocks;
      console.log(
        `hint values ${dtype}: hints used ${used} of ${chances} times`,
      );
      assert.ok(
        used >= 0.9 * chances,
        `hints used ${used} of ${chances} times`,
      );
    } finally {
      twin.dispose();
    }
  });
}

// The one-pass update's grouping when one owner thread holds every window
// entry of a block: large gradients only on the coordinates of owner 5
// (f32: c mod 256 = 5; bf16: word c / 2 mod 256 = 5), k = all of them, so
// that after m steps each of them is in every slot (16 · 10 entries per
// block in f32, 32 · 10 in bf16) and the entries' places come from counts
// over one group of 160 or 320.
for (const dtype of ["f32", "bf16"] as const) {
  Deno.test(`one-pass update, every entry in one owner thread's coordinates, ${dtype}: == CPU`, async () => {
    const n = 3 * 4096 + 1000;
    const perOwner = dtype === "f32" ? 16 : 32;
    const owned = (j: number) =>
      ((dtype === "f32" ? j % 4096 : (j % 4096) >> 1) & 255) === 5;
    const seed = testSeed(`one owner ${dtype}`);
    const twin = new Twin({
      dtype,
      sizes: [n],
      seed,
      options: { lr: 1e-2, density: perOwner / 4096 },
    });
    try {
      assert.ok(twin.gpu.geometry.every(fastPath));
      for (let s = 1; s <= 12; s++) {
        const g = new Float32Array(n);
        for (let j = 0; j < n; j++) {
          g[j] = (twin.r() < 0.5 ? -1 : 1) *
            (owned(j) ? 1 + twin.r() : 1e-3 * twin.r());
        }
        twin.step([dtype === "f32" ? g : toBf16(g)]);
        await twin.compare(`one owner: seed ${seed}, step ${s}`);
      }
    } finally {
      twin.dispose();
    }
  });
}

/** bf16 bits of f32 values, nearest-even. */
function toBf16(f: Float32Array): Uint16Array {
  return Uint16Array.from(f, (x) => bf16Bits(x));
}

Deno.test("fastPath: the one-pass kernels take exactly the tensors whose blocks are one EF block and fit their limits", () => {
  const shape = {
    window: 10,
    density: 0.01,
    topkBlockSize: 4096,
    efBlockSize: 4096,
  };
  const g = (d: number, o = {}) => microAdamGeometry(d, { ...shape, ...o });
  assert.equal(fastPath(g(1 << 20)), true); // defaults
  assert.equal(fastPath(g(70001)), true); // a tail block
  assert.equal(fastPath(g(1000, { efBlockSize: 1000 })), true); // one block = one EF block
  assert.equal(fastPath(g(1000, { efBlockSize: 999 })), false); // two EF blocks in it
  assert.equal(fastPath(g(1 << 20, { efBlockSize: 64 })), false); // Q < D
  assert.equal(fastPath(g(1 << 20, { efBlockSize: 8192 })), false); // Q > D: across blocks
  assert.equal(fastPath(g(3, { topkBlockSize: 3, efBlockSize: 3 })), true);
  assert.equal(fastPath(g(30, { topkBlockSize: 3, efBlockSize: 3 })), false); // blocks off code words
  assert.equal(
    fastPath(g(1 << 20, { topkBlockSize: 8192, efBlockSize: 8192 })),
    false,
  );
  assert.equal(fastPath(g(1 << 20, { window: 8, density: 64 / 4096 })), true); // 512 entries
  assert.equal(fastPath(g(1 << 20, { window: 8, density: 65 / 4096 })), false); // 520
  assert.equal(fastPath(g(1 << 20, { window: 17, density: 1 / 4096 })), false); // m > 16
});
