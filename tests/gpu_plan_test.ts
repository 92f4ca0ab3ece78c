/**
 * Dispatch planning (src/gpu/plan.ts planDispatch), segment tables
 * (src/gpu/segments.ts segmentTable) and tensor validation
 * (src/gpu/tensors.ts validateTensors), with closed-form expectations.
 */

import assert from "node:assert/strict";
import { InvalidOptionError, TensorMismatchError } from "../src/errors.ts";
import {
  type Batch,
  type Plan,
  planDispatch,
  type PlanOptions,
} from "../src/gpu/plan.ts";
import { SEGMENT_WORDS, segmentTable, TILE } from "../src/gpu/segments.ts";
import {
  type GpuTensor,
  type PlacedTensor,
  validateTensors,
} from "../src/gpu/tensors.ts";
import { TENSOR_USAGE, testDevice } from "./gpu_util.ts";

const device = await testDevice();

const STORAGE = GPUBufferUsage.STORAGE;
const created: GPUBuffer[] = [];
function buf(size: number, usage = TENSOR_USAGE): GPUBuffer {
  const b = device.createBuffer({ size, usage });
  created.push(b);
  return b;
}

/** A tensor alone in its own pair of buffers. */
function own(length: number, bpe: 2 | 4, name?: string, usage = TENSOR_USAGE) {
  const size = Math.ceil(length * bpe / 4) * 4;
  return { param: buf(size, usage), grad: buf(size, usage), length, name };
}

const alignUp = (x: number, a: number) => Math.ceil(x / a) * a;
const alignDown = (x: number, a: number) => Math.floor(x / a) * a;

function options(o: Partial<PlanOptions> = {}): PlanOptions {
  return {
    bytesPerElement: 4,
    bindLimit: 1 << 20,
    offsetAlignment: 256,
    gatherBelow: 65536,
    chunkUnit: () => 8,
    segmentStateBytes: (_t, _s, len) => [8 * len],
    ...o,
  };
}

function plan(
  groups: GpuTensor[][],
  o: Partial<PlanOptions> = {},
): { plan: Plan; tensors: PlacedTensor[] } {
  const opts = options(o);
  const tensors = validateTensors(groups, opts.bytesPerElement);
  const p = planDispatch(device, tensors, opts);
  created.push(...p.arenas);
  return { plan: p, tensors };
}

/** Invariants every group must satisfy: bindings in range, segments inside them. */
function checkGroup(
  g: Batch,
  tensors: PlacedTensor[],
  o: PlanOptions,
): void {
  const bpe = o.bytesPerElement;
  const lanes = [{ params: g.params, grads: g.grads }, ...g.lanes ?? []];
  for (const b of lanes.flatMap((l) => [l.params, l.grads])) {
    assert.equal(b.offset % o.offsetAlignment, 0, `binding offset ${b.offset}`);
    assert.equal(b.size % 4, 0, `binding size ${b.size}`);
    assert.ok(b.size <= o.bindLimit, `binding ${b.size} > ${o.bindLimit}`);
    assert.ok(b.offset + b.size <= b.buffer.size);
  }
  for (const s of g.segments) {
    const t = tensors[s.tensor];
    assert.ok(s.len >= 1 && s.coordStart + s.len <= t.length);
    assert.ok(Number.isInteger(s.paramOff) && Number.isInteger(s.gradOff));
    const lane = lanes[s.lane ?? 0];
    assert.ok(lane, `segment lane ${s.lane} of ${lanes.length}`);
    assert.ok((s.paramOff + s.len) * bpe <= lane.params.size);
    assert.ok((s.gradOff + s.len) * bpe <= lane.grads.size);
    if (!g.gather) {
      // Native groups bind the user's buffers: the offsets point at the tensor.
      assert.equal(lane.params.buffer, t.param);
      assert.equal(lane.grads.buffer, t.grad);
      assert.equal(
        lane.params.offset + s.paramOff * bpe,
        (t.offset + s.coordStart) * bpe,
      );
      assert.equal(
        lane.grads.offset + s.gradOff * bpe,
        (t.offset + s.coordStart) * bpe,
      );
    }
  }
}

/** Every tensor is covered exactly once, in order, by the plan's segments. */
function checkCoverage(p: Plan, tensors: PlacedTensor[]): void {
  const pieces = tensors.map(() => [] as [number, number][]);
  for (const g of p.batches) {
    for (const s of g.segments) pieces[s.tensor].push([s.coordStart, s.len]);
  }
  tensors.forEach((t, i) => {
    const list = pieces[i].sort((a, b) => a[0] - b[0]);
    let at = 0;
    for (const [start, len] of list) {
      assert.equal(start, at, `tensor ${i}: gap or overlap at ${at}`);
      at += len;
    }
    assert.equal(at, t.length, `tensor ${i} covered up to ${at}`);
  });
}

// ---- gathering -----------------------------------------------------------------

for (const bpe of [4, 2] as const) {
  Deno.test(`gather (${bpe === 4 ? "f32" : "bf16"}): three small tensors alone in their buffers -> one arena group with 32-byte aligned slots`, () => {
    const lengths = [10, 1, 33];
    const o = options({ bytesPerElement: bpe });
    const { plan: p, tensors } = plan(
      [lengths.map((n, i) => own(n, bpe, `t${i}`))],
      o,
    );
    assert.equal(p.batches.length, 1);
    const g = p.batches[0];
    assert.ok(g.gather);
    // Slots: each tensor's bytes rounded up to 32.
    const slots: number[] = [];
    let cursor = 0;
    for (const n of lengths) {
      slots.push(cursor);
      cursor = alignUp(cursor + n * bpe, 32);
    }
    assert.deepEqual(slots, bpe === 4 ? [0, 64, 96] : [0, 32, 64]);
    assert.equal(p.arenas.length, 2);
    assert.equal(p.arenaBytes, 2 * cursor);
    assert.deepEqual(p.arenas.map((a) => a.size), [cursor, cursor]);
    assert.equal(g.params.buffer, p.arenas[0]);
    assert.equal(g.grads.buffer, p.arenas[1]);
    assert.deepEqual([g.params.offset, g.params.size], [0, cursor]);
    assert.deepEqual(
      g.segments,
      lengths.map((n, i) => ({
        tensor: i,
        coordStart: 0,
        len: n,
        paramOff: slots[i] / bpe,
        gradOff: slots[i] / bpe,
      })),
    );
    assert.deepEqual(
      g.gather,
      tensors.map((t, i) => ({
        tensor: i,
        param: t.param,
        paramOffset: 0,
        grad: t.grad,
        gradOffset: 0,
        arenaOffset: slots[i],
        bytes: alignUp(lengths[i] * bpe, 4),
      })),
    );
    // The arenas can be copied into and bound as storage.
    assert.ok(p.arenas[0].usage & GPUBufferUsage.STORAGE);
    assert.ok(p.arenas[0].usage & GPUBufferUsage.COPY_SRC);
    assert.ok(p.arenas[0].usage & GPUBufferUsage.COPY_DST);
    assert.ok(p.arenas[1].usage & GPUBufferUsage.COPY_DST);
  });
}

Deno.test("gather: a tensor at an offset of its own buffer copies from that offset", () => {
  const param = buf(4 * 20);
  const grad = buf(4 * 20);
  const { plan: p } = plan([[
    { param, grad, length: 5, offset: 12 },
    own(7, 4),
  ]]);
  assert.equal(p.batches.length, 1);
  assert.deepEqual(
    p.batches[0].gather!.map((c) => [c.paramOffset, c.gradOffset, c.bytes]),
    [[48, 48, 20], [0, 0, 28]],
  );
});

Deno.test("gather: a single small tensor is not gathered (no arena)", () => {
  const o = options();
  const { plan: p, tensors } = plan([[own(10, 4)]], o);
  assert.equal(p.batches.length, 1);
  assert.equal(p.batches[0].gather, undefined);
  assert.deepEqual(p.arenas, []);
  assert.equal(p.arenaBytes, 0);
  assert.equal(p.batches[0].params.buffer, tensors[0].param);
  assert.deepEqual(
    [p.batches[0].params.offset, p.batches[0].params.size],
    [0, 40],
  );
  checkGroup(p.batches[0], tensors, o);
});

Deno.test("gather: tensors without COPY_SRC|COPY_DST on param or COPY_SRC on grad stay in place", () => {
  const noCopyDst = STORAGE | GPUBufferUsage.COPY_SRC;
  const noCopySrc = STORAGE | GPUBufferUsage.COPY_DST;
  const plain = (n: number, pu: number, gu: number) => ({
    param: buf(4 * n, pu),
    grad: buf(4 * n, gu),
    length: n,
  });
  const o = options();
  const { plan: p, tensors } = plan([[
    plain(10, STORAGE, STORAGE), // 0: no copies at all
    plain(10, noCopyDst, TENSOR_USAGE), // 1: param lacks COPY_DST
    plain(10, TENSOR_USAGE, noCopySrc), // 2: grad lacks COPY_SRC
    plain(10, TENSOR_USAGE, noCopyDst), // 3: grad without COPY_DST is fine
    plain(10, TENSOR_USAGE, TENSOR_USAGE), // 4
  ]], o);
  const gathered = p.batches.filter((g) => g.gather);
  assert.equal(gathered.length, 1);
  assert.deepEqual(gathered[0].segments.map((s) => s.tensor), [3, 4]);
  const native = p.batches.filter((g) => !g.gather);
  assert.deepEqual(native.map((g) => g.segments.map((s) => s.tensor)), [
    [0],
    [1],
    [2],
  ]);
  for (const g of p.batches) checkGroup(g, tensors, o);
  checkCoverage(p, tensors);
});

Deno.test("gather: only tensors of at most gatherBelow elements; gatherBelow 0 disables gathering", () => {
  const mk = () => [own(100, 4), own(101, 4), own(100, 4), own(99, 4)];
  const { plan: p } = plan([mk()], { gatherBelow: 100 });
  const arena = p.batches.filter((g) => g.gather);
  assert.equal(arena.length, 1);
  assert.deepEqual(arena[0].segments.map((s) => s.tensor), [0, 2, 3]);
  assert.equal(p.batches.length, 2);
  const { plan: none } = plan([mk()], { gatherBelow: 0 });
  assert.equal(none.batches.length, 4);
  assert.ok(none.batches.every((g) => !g.gather));
  assert.deepEqual(none.arenas, []);
});

Deno.test("gather: arenas are split when the bytes or the state exceed one binding", () => {
  // bindLimit 4096 leaves 4096 - 256 = 3840 bytes of room; 50 f32 = 200 B,
  // 224 B per slot, so 17 slots fit (3808 B) and the 18th starts a new arena
  // (the state, 4 B per element, is no limit here).
  const o = options({
    bindLimit: 4096,
    segmentStateBytes: (_t, _s, len) => [4 * len],
  });
  const { plan: p, tensors } = plan(
    [Array.from({ length: 20 }, () => own(50, 4))],
    o,
  );
  assert.deepEqual(p.batches.map((g) => g.segments.length), [17, 3]);
  assert.deepEqual(p.arenas.map((a) => a.size), [3808, 3808, 672, 672]);
  assert.equal(p.arenaBytes, 2 * (3808 + 672));
  for (const g of p.batches) checkGroup(g, tensors, o);
  checkCoverage(p, tensors);
  // State of 40 B per element: 2000 B per tensor, two would exceed 3840 B,
  // so 50-element tensors go one per arena.
  const s = options({
    bindLimit: 4096,
    segmentStateBytes: (_t, _s, len) => [8 * len, 40 * len],
  });
  const { plan: q } = plan([Array.from({ length: 3 }, () => own(50, 4))], s);
  assert.deepEqual(q.batches.map((g) => g.segments.length), [1, 1, 1]);
});

// ---- tensors sharing buffers ------------------------------------------------------

for (const bpe of [4, 2] as const) {
  Deno.test(`shared buffers (${bpe === 4 ? "f32" : "bf16"}): tensors at offsets form one group; offsets are relative to the aligned binding`, () => {
    const param = buf(4096);
    const grad = buf(4096);
    // First tensor starts at byte 70·bpe + ..., not on a 256-byte boundary.
    const at = [70, 200, 330, 600];
    const len = [100, 64, 200, 3];
    const o = options({ bytesPerElement: bpe });
    const { plan: p, tensors } = plan(
      [at.map((offset, i) => ({ param, grad, offset, length: len[i] }))],
      o,
    );
    assert.equal(p.batches.length, 1);
    const g = p.batches[0];
    assert.equal(g.gather, undefined);
    const first = alignDown(70 * bpe, 256);
    const end = alignUp((600 + 3) * bpe, 4);
    assert.deepEqual(
      [g.params.buffer, g.params.offset, g.params.size],
      [param, first, end - first],
    );
    assert.deepEqual(
      [g.grads.buffer, g.grads.offset, g.grads.size],
      [grad, first, end - first],
    );
    assert.deepEqual(
      g.segments.map((s) => [s.tensor, s.paramOff, s.gradOff, s.len]),
      at.map((a, i) => [i, a - first / bpe, a - first / bpe, len[i]]),
    );
    checkGroup(g, tensors, o);
  });
}

Deno.test("shared buffers: different grad buffers form different groups; a full binding is flushed into a new group", () => {
  const param = buf(8192);
  const g1 = buf(8192);
  const g2 = buf(8192);
  const o = options({
    bindLimit: 4096,
    segmentStateBytes: (_t, _s, len) => [4 * len], // no limit here
  });
  const { plan: p, tensors } = plan([[
    { param, grad: g1, offset: 0, length: 400 }, // bytes 0..1600
    { param: buf(8192), grad: g2, offset: 0, length: 10 },
    { param, grad: g1, offset: 500, length: 400 }, // bytes 2000..3600
    { param, grad: g1, offset: 1000, length: 100 }, // 4000..4400: past the room
  ]], o);
  const byTensors = p.batches.map((g) => g.segments.map((s) => s.tensor));
  assert.deepEqual(byTensors.sort(), [[0, 2], [1], [3]]);
  const last = p.batches.find((g) => g.segments[0].tensor === 3)!;
  assert.equal(last.params.offset, 3840); // alignDown(4000, 256)
  assert.equal(last.segments[0].paramOff, 40); // (4000 - 3840) / 4
  for (const g of p.batches) checkGroup(g, tensors, o);
  checkCoverage(p, tensors);
});

Deno.test("shared buffers: whole tensors whose summed state exceeds a binding go to separate groups", () => {
  const param = buf(4096);
  const grad = buf(4096);
  const o = options({
    bindLimit: 4096,
    segmentStateBytes: (_t, _s, len) => [16 * len], // 3840 / 16 = 240 elements
  });
  const { plan: p } = plan([[
    { param, grad, offset: 0, length: 200 },
    { param, grad, offset: 200, length: 200 },
  ]], o);
  assert.deepEqual(p.batches.map((g) => g.segments.map((s) => s.tensor)), [
    [0],
    [1],
  ]);
});

// ---- lanes ----------------------------------------------------------------------------

/** A batch's segments as [tensor, lane]. */
const lanesOf = (g: Batch) => g.segments.map((s) => [s.tensor, s.lane ?? 0]);

Deno.test("lanes: batches of laneable tensors in buffers of their own merge, up to `lanes` per batch, each on its own bindings", () => {
  const o = { gatherBelow: 0, lanes: 3, laneable: () => true };
  const { plan: p, tensors } = plan([[
    own(1000, 4),
    own(2000, 4),
    own(300, 4),
    own(4000, 4),
    own(50, 4),
  ]], o);
  assert.deepEqual(
    p.batches.map(lanesOf),
    [[[0, 0], [1, 1], [2, 2]], [[3, 0], [4, 1]]],
  );
  assert.deepEqual(p.batches.map((g) => g.lanes?.length ?? 0), [2, 1]);
  for (const g of p.batches) checkGroup(g, tensors, options(o));
  checkCoverage(p, tensors);
});

Deno.test("lanes: a shared buffer pair's tensors stay one lane; tensors that are not laneable, gathered arenas and chunks of one tensor are not merged", () => {
  const param = buf(4 * 3000);
  const grad = buf(4 * 3000);
  const o = {
    bindLimit: 16384,
    gatherBelow: 100,
    lanes: 4,
    laneable: (t: PlacedTensor) => t.length !== 700,
    segmentStateBytes: (_t: PlacedTensor, _s: number, len: number) => [len],
  };
  const { plan: p, tensors } = plan([[
    { param, grad, offset: 0, length: 1000 }, // 0, 1: one lane
    { param, grad, offset: 1000, length: 1000 },
    own(700, 4), // 2: not laneable
    own(5000, 4), // 3: chunks of 4032 and 968 elements
    own(50, 4), // 4, 5: one gathered arena
    own(60, 4),
  ]], o);
  // The shared pair and the first chunk merge; the second chunk would bind
  // a buffer a lane already binds, so it starts the next batch.
  assert.deepEqual(p.batches.map(lanesOf), [
    [[2, 0]],
    [[0, 0], [1, 0], [3, 1]],
    [[3, 0]],
    [[4, 0], [5, 0]],
  ]);
  assert.deepEqual(p.batches[1].segments.map((s) => s.len), [1000, 1000, 4032]);
  assert.ok(p.batches[3].gather);
  for (const g of p.batches) checkGroup(g, tensors, options(o));
  checkCoverage(p, tensors);
});

Deno.test("lanes: a batch of more than laneBelow elements keeps its own dispatches", () => {
  const o = { gatherBelow: 0, lanes: 4, laneable: () => true, laneBelow: 1000 };
  const { plan: p } = plan([[
    own(1000, 4),
    own(1001, 4),
    own(10, 4),
    own(990, 4),
  ]], o);
  assert.deepEqual(
    p.batches.map(lanesOf),
    [[[1, 0]], [[0, 0], [2, 1], [3, 2]]],
  );
});

Deno.test("lanes: a merge stops where the summed state would pass one binding", () => {
  const o = {
    gatherBelow: 0,
    bindLimit: 4096,
    lanes: 4,
    laneable: () => true,
    segmentStateBytes: (_t: PlacedTensor, _s: number, len: number) => [
      16 * len,
    ],
  };
  // room = 4096 - 256 = 3840 bytes of state: 240 elements.
  const { plan: p } = plan([[own(100, 4), own(100, 4), own(100, 4)]], o);
  assert.deepEqual(
    p.batches.map(lanesOf),
    [[[0, 0], [1, 1]], [[2, 0]]],
  );
});

// ---- chunking ---------------------------------------------------------------------

for (const bpe of [4, 2] as const) {
  Deno.test(`chunk (${bpe === 4 ? "f32" : "bf16"}): a tensor over the binding limit is cut at multiples of chunkUnit; chunks tile it`, () => {
    const unit = 64;
    const o = options({
      bytesPerElement: bpe,
      bindLimit: 4096,
      chunkUnit: () => unit,
      segmentStateBytes: (_t, _s, len) => [bpe * len], // no tighter than params
    });
    const length = 5001;
    const offset = 38; // even, not aligned
    const param = buf(alignUp((offset + length) * bpe, 4) + 12);
    const grad = buf(alignUp((offset + length) * bpe, 4));
    const { plan: p, tensors } = plan([[{ param, grad, length, offset }]], o);
    // room = 4096 - 256 = 3840 bytes: floor(3840 / bpe / 64) · 64 elements.
    const chunk = Math.floor(3840 / bpe / unit) * unit;
    assert.equal(chunk, bpe === 4 ? 960 : 1920);
    const starts = p.batches.map((g) => g.segments[0].coordStart);
    const want = Array.from(
      { length: Math.ceil(length / chunk) },
      (_, i) => i * chunk,
    );
    assert.deepEqual(starts, want);
    for (const g of p.batches) {
      assert.equal(g.segments.length, 1);
      const s = g.segments[0];
      assert.equal(s.coordStart % unit, 0);
      assert.equal(s.len, Math.min(chunk, length - s.coordStart));
      assert.equal(
        g.params.offset,
        alignDown((offset + s.coordStart) * bpe, 256),
      );
      checkGroup(g, tensors, o);
    }
    checkCoverage(p, tensors);
  });
}

Deno.test("chunk: tensors alone in their buffers but larger than a binding are chunked, not gathered into an oversized arena", () => {
  // Both are <= gatherBelow (65536) and gatherable, but 5003 f32 = 20012 B
  // does not fit a 4096-byte binding: no binding may exceed the limit.
  const o = options({
    bindLimit: 4096,
    segmentStateBytes: (_t, _s, len) => [4 * len],
  });
  const { plan: p, tensors } = plan(
    [[own(5003, 4), own(777, 4), own(10, 4)]],
    o,
  );
  for (const g of p.batches) {
    assert.ok(
      g.params.size <= 4096 && g.grads.size <= 4096,
      `a ${g.params.size}-byte binding (tensors ${
        g.segments.map((s) => s.tensor)
      }, gathered: ${Boolean(g.gather)}) exceeds bindLimit 4096`,
    );
    checkGroup(g, tensors, o);
  }
  checkCoverage(p, tensors);
});

Deno.test("chunk: state-size limits halve the chunk until the state fits", () => {
  const o = options({
    bindLimit: 4096,
    chunkUnit: () => 16,
    segmentStateBytes: (_t, _s, len) => [4 * len, 16 * len],
  });
  const { plan: p, tensors } = plan([[own(1000, 4)]], o);
  // 960 -> 480 -> 240 elements (16 · 240 = 3840 B of state).
  assert.deepEqual(
    p.batches.map((g) => [g.segments[0].coordStart, g.segments[0].len]),
    [[0, 240], [240, 240], [480, 240], [720, 240], [960, 40]],
  );
  for (const g of p.batches) checkGroup(g, tensors, o);
  checkCoverage(p, tensors);
  // 8 B of state per element: one halving (960 -> 480) is enough.
  const h = options({
    bindLimit: 4096,
    chunkUnit: () => 16,
    segmentStateBytes: (_t, _s, len) => [8 * len],
  });
  const { plan: q } = plan([[own(1000, 4)]], h);
  assert.deepEqual(q.batches.map((g) => g.segments[0].len), [480, 480, 40]);
});

Deno.test("chunk: a tensor whose single chunk unit cannot fit throws InvalidOptionError naming it and the bytes it needs", () => {
  const cases: [Partial<PlanOptions>, number][] = [
    [{ chunkUnit: () => 1000 }, 8000 + 256], // its state, 8 B per element, is the largest
    [{
      chunkUnit: () => 64,
      segmentStateBytes: (_t, _s, len) => [64 * len], // one unit: 4096 B
    }, 4096 + 256],
  ];
  for (const [c, need] of cases) {
    assert.throws(
      () => plan([[own(2000, 4, "big")]], { bindLimit: 4096, ...c }),
      (e: unknown) =>
        e instanceof InvalidOptionError &&
        /tensor 0 \("big"\)/.test(e.message) && /4096-byte/.test(e.message) &&
        e.message.includes(`needs ${need} bytes of binding`) &&
        e.message.includes(`raise maxBindingBytes to at least ${need}`),
    );
  }
});

// ---- segmentTable -------------------------------------------------------------------

Deno.test("segmentTable: header, row layout, defaults and prefix sums of blocks and tiles", () => {
  const segs = [
    {
      coordStart: 0,
      len: 3000,
      d: 5000,
      paramOff: 0,
      gradOff: 0,
      paramGroup: 0,
      tensor: 0,
      block: 1000,
    },
    {
      coordStart: 3000,
      len: 2000,
      d: 5000,
      paramOff: 7,
      gradOff: 9,
      paramGroup: 1,
      tensor: 0,
      block: 1000,
      codesOff: 11,
      windowOff: 12,
      statsOff: 13,
      kBlock: 10,
      kTail: 3,
      stageOff: 14,
      lane: 2,
    },
    {
      coordStart: 0,
      len: 1,
      d: 1,
      paramOff: 5000,
      gradOff: 5001,
      paramGroup: 2,
      tensor: 1,
      stateOff: 77,
    },
    {
      coordStart: 0,
      len: 2049,
      d: 2049,
      paramOff: 1,
      gradOff: 2,
      paramGroup: 0,
      tensor: 2,
      block: 4096,
    },
    // Exact multiples of the block and of TILE: no partial block or tile.
    {
      coordStart: 0,
      len: 2048,
      d: 2048,
      paramOff: 0,
      gradOff: 0,
      paramGroup: 0,
      tensor: 3,
      block: 512,
    },
  ];
  const t = segmentTable(segs);
  // Blocks: ceil(3000/1000) + ceil(2000/1000) + ceil(1/1024) + ceil(2049/4096)
  // + 2048/512.
  assert.equal(t.blocks, 3 + 2 + 1 + 1 + 4);
  // Tiles of 1024: 3 + 2 + 1 + 3 + 2.
  assert.equal(TILE, 1024);
  assert.equal(t.tiles, 3 + 2 + 1 + 3 + 2);
  assert.equal(t.words.length, 4 + SEGMENT_WORDS * 5);
  assert.deepEqual([...t.words.subarray(0, 4)], [5, 11, 11, 0]);
  const row = (
    i: number,
  ) => [
    ...t.words.subarray(4 + SEGMENT_WORDS * i, 4 + SEGMENT_WORDS * (i + 1)),
  ];
  // deno-fmt-ignore
  const rows = [
    // coord len   d     pOff  gOff codes win stats block kBlk kTail fBlk fTile grp tens stateOff stageOff lane
    [0,     3000, 5000, 0,    0,    0,  0,  0,    1000, 0,   0,    0,   0,    0,  0,   0,       0,       0],
    [3000,  2000, 5000, 7,    9,    11, 12, 13,   1000, 10,  3,    3,   3,    1,  0,   0,       14,      2],
    [0,     1,    1,    5000, 5001, 0,  0,  0,    1024, 0,   0,    5,   5,    2,  1,   77,      0,       0],
    [0,     2049, 2049, 1,    2,    0,  0,  0,    4096, 0,   0,    6,   6,    0,  2,   0,       0,       0],
    [0,     2048, 2048, 0,    0,    0,  0,  0,    512,  0,   0,    7,   9,    0,  3,   0,       0,       0],
  ];
  rows.forEach((want, i) => assert.deepEqual(row(i), want, `row ${i}`));
});

Deno.test("segmentTable: an empty table is just the header", () => {
  const t = segmentTable([]);
  assert.deepEqual([...t.words], [0, 0, 0, 0]);
  assert.deepEqual([t.blocks, t.tiles], [0, 0]);
});

// ---- validateTensors ----------------------------------------------------------

Deno.test("validateTensors: places tensors in group order with names, groups and offsets", () => {
  const a = own(4, 4, "a");
  const b = own(6, 4);
  const shared = { param: buf(64), grad: buf(64) };
  const placed = validateTensors([
    [a, { ...shared, length: 3, offset: 0 }],
    [b, { ...shared, length: 4, offset: 4, name: "s2" }],
  ], 4);
  assert.deepEqual(
    placed.map((t) => [t.index, t.name, t.group, t.length, t.offset]),
    [[0, "a", 0, 4, 0], [1, "1", 0, 3, 0], [2, "2", 1, 6, 0], [
      3,
      "s2",
      1,
      4,
      4,
    ]],
  );
  assert.equal(placed[0].param, a.param);
  // bf16: tensors may share a buffer when they do not share a u32 word.
  const bf = validateTensors([[
    { ...shared, length: 3, offset: 0 },
    { ...shared, length: 2, offset: 4 },
  ]], 2);
  assert.equal(bf.length, 2);
  // Exactly large enough: (offset + length) · bpe rounded up to 4.
  validateTensors(
    [[{ param: buf(12), grad: buf(12), length: 3, offset: 2 }]],
    2,
  );
  validateTensors([[{ param: buf(12), grad: buf(12), length: 3 }]], 4);
});

function rejects(
  groups: unknown[][],
  bpe: 2 | 4,
  ...patterns: RegExp[]
): void {
  assert.throws(
    () => validateTensors(groups as GpuTensor[][], bpe),
    (e: unknown) => {
      assert.ok(e instanceof TensorMismatchError, `got ${e}`);
      for (const p of patterns) assert.match(e.message, p);
      return true;
    },
  );
}

Deno.test("validateTensors: each malformed tensor is a TensorMismatchError naming it", () => {
  const ok = own(4, 4, "ok");
  const p = buf(64);
  const g = buf(64);
  const t = (x: Record<string, unknown>) => ({
    param: p,
    grad: g,
    length: 4,
    name: "w",
    ...x,
  });
  rejects(
    [[ok, null]],
    4,
    /tensor 1 \("1"\)/,
    /expected \{ param, grad, length \}/,
  );
  rejects(
    [[ok, t({ param: {} })]],
    4,
    /tensor 1 \("w"\)/,
    /param must be a GPUBuffer/,
  );
  rejects(
    [[ok, t({ grad: new ArrayBuffer(64) })]],
    4,
    /tensor 1 \("w"\)/,
    /grad must be a GPUBuffer/,
  );
  rejects(
    [[t({ param: buf(64, GPUBufferUsage.COPY_SRC) })]],
    4,
    /tensor 0 \("w"\)/,
    /param buffer needs GPUBufferUsage\.STORAGE/,
  );
  rejects(
    [[t({ grad: buf(64, GPUBufferUsage.COPY_DST) })]],
    4,
    /tensor 0 \("w"\)/,
    /grad buffer needs GPUBufferUsage\.STORAGE/,
  );
  for (const length of [0, -1, 1.5, NaN, "4", undefined]) {
    rejects(
      [[t({ length })]],
      4,
      /tensor 0 \("w"\)/,
      /length must be an integer >= 1, got/,
    );
  }
  rejects([[t({ length: 2.5 })]], 4, /got 2\.5/);
  for (const offset of [-2, 1.5, NaN]) {
    rejects(
      [[t({ offset })]],
      4,
      /tensor 0 \("w"\)/,
      /offset must be an integer >= 0, got/,
    );
  }
  rejects(
    [[t({ offset: 3 })]],
    2,
    /tensor 0 \("w"\)/,
    /offset must be even, got 3/,
  );
  // Too small: (offset 10 + length 8) · 4 = 72 > 64 bytes.
  rejects(
    [[t({ length: 8, offset: 10 })]],
    4,
    /tensor 0 \("w"\)/,
    /param buffer is 64 bytes, expected at least 72/,
  );
  rejects(
    [[t({ grad: buf(16), length: 5 })]],
    4,
    /grad buffer is 16 bytes, expected at least 20/,
  );
  rejects(
    [[t({ param: buf(12), length: 6, offset: 1 })]],
    4,
    /expected at least 28/,
  );
  // bf16: 7 · 2 = 14 bytes, rounded up to 16 > 12.
  rejects(
    [[t({ param: buf(12), length: 7 })]],
    2,
    /param buffer is 12 bytes, expected at least 16/,
  );
  rejects(
    [[t({ grad: p })]],
    4,
    /tensor 0 \("w"\)/,
    /param and grad must be different buffers/,
  );
});

Deno.test("validateTensors: overlaps and a buffer used for params by one tensor and grads by another", () => {
  const p = buf(256);
  const g = buf(256);
  rejects(
    [[{ param: p, grad: g, length: 10, name: "a" }, {
      param: p,
      grad: g,
      length: 10,
      offset: 9,
      name: "b",
    }]],
    4,
    /tensors 0 \("a"\) and 1 \("b"\) overlap/,
    /elements 0\.\.9 and 9\.\.18/,
  );
  // Overlap found across groups and regardless of order.
  rejects(
    [[{ param: p, grad: g, length: 10, offset: 20, name: "a" }], [{
      param: p,
      grad: g,
      length: 30,
      name: "b",
    }]],
    4,
    /overlap/,
    /"a"/,
    /"b"/,
  );
  // bf16: a tensor may not start in the u32 word where the previous one ends.
  rejects(
    [[{ param: p, grad: g, length: 3, name: "a" }, {
      param: p,
      grad: g,
      length: 2,
      offset: 2,
      name: "b",
    }]],
    2,
    /overlap/,
  );
  // Same buffer as param of one tensor and grad of another (no overlap).
  const x = buf(256);
  rejects(
    [[{ param: x, grad: g, length: 10, name: "a" }, {
      param: p,
      grad: x,
      length: 10,
      offset: 20,
      name: "b",
    }]],
    4,
    /tensors 0 \("a"\) and 1 \("b"\) use one buffer both for parameters and for gradients/,
  );
});

Deno.test("validateTensors: the missing-STORAGE message lists the buffer's usage flags", () => {
  const p = buf(64, GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST);
  rejects(
    [[{ param: p, grad: buf(64), length: 4, name: "w" }]],
    4,
    /its usage is COPY_SRC\|COPY_DST/,
  );
  rejects(
    [[{
      param: buf(64),
      grad: buf(64, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST),
      length: 4,
    }]],
    4,
    /its usage is MAP_READ\|COPY_DST/,
  );
});

Deno.test("cleanup", () => {
  for (const b of created) b.destroy();
});
