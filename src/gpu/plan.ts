/**
 * Dispatch planning: which tensors share one dispatch, and how tensors larger
 * than a storage binding are split.
 *
 * A batch binds one parameter range and one gradient range (each at
 * most `maxStorageBufferBindingSize`) and walks a table of segments. Tensors
 * that already share buffers are batched as they lie. Small tensors in
 * buffers of their own are gathered: copied into an arena before the step
 * and back after it, so 500 biases cost 500 copies and one dispatch chain,
 * not 500 dispatch chains. A tensor over the binding limit is cut into
 * chunks at multiples of `chunkUnit` (top-k block and code-word boundaries).
 *
 * @module
 */

import { InvalidOptionError } from "../errors.ts";
import type { PlacedTensor } from "./tensors.ts";

/** A contiguous range of one tensor inside a batch. */
export interface Segment {
  /** Index of the tensor. */
  tensor: number;
  /** First element, as a coordinate of the tensor. */
  coordStart: number;
  /** Number of elements. */
  len: number;
  /** Element offset of the segment inside the batch's params binding. */
  paramOff: number;
  /** Element offset inside the grads binding. */
  gradOff: number;
  /**
   * Which of the batch's binding pairs the segment lies in: 0 for
   * {@link Batch.params} and {@link Batch.grads}, l for `Batch.lanes[l - 1]`.
   * @default {0}
   */
  lane?: number;
}

/** A buffer range bound to a kernel. */
export interface Binding {
  /** The buffer. */
  buffer: GPUBuffer;
  /** Byte offset (a multiple of the device's offset alignment). */
  offset: number;
  /** Byte size (a multiple of 4). */
  size: number;
}

/** One lane of a batch: a parameter binding and a gradient binding. */
export interface LaneBindings {
  /** Parameters binding. */
  params: Binding;
  /** Gradients binding. */
  grads: Binding;
}

/** A copy between a user's tensor and a gather arena. */
export interface GatherCopy {
  /** Tensor index. */
  tensor: number;
  /** User parameter buffer and byte offset. */
  param: GPUBuffer;
  /** Byte offset in `param`. */
  paramOffset: number;
  /** User gradient buffer. */
  grad: GPUBuffer;
  /** Byte offset in `grad`. */
  gradOffset: number;
  /** Byte offset in both arenas. */
  arenaOffset: number;
  /** Bytes to copy (a multiple of 4). */
  bytes: number;
}

/**
 * A batch: segments that share one parameter binding and one gradient
 * binding, updated together by one dispatch of each kernel.
 */
export interface Batch {
  /** Parameters binding. */
  params: Binding;
  /** Gradients binding. */
  grads: Binding;
  /** Segments, in dispatch order. */
  segments: Segment[];
  /**
   * Further parameter and gradient bindings (lanes 1, 2, ...), when tensors
   * of different buffers share the batch (see {@link PlanOptions.lanes}).
   */
  lanes?: LaneBindings[];
  /** For gathered batches, the copies in (grads, params) and out (params). */
  gather?: GatherCopy[];
}

/** What the planner needs to know. */
export interface PlanOptions {
  /** Bytes per parameter/gradient element. */
  bytesPerElement: 2 | 4;
  /** Largest byte size of one binding. */
  bindLimit: number;
  /** Byte alignment of binding offsets. */
  offsetAlignment: number;
  /** Tensors of at most this many elements, alone in their buffers, are gathered. */
  gatherBelow: number;
  /** Chunk boundaries of tensor `t` are multiples of this many elements. */
  chunkUnit(t: PlacedTensor): number;
  /** Bytes of each optimizer-owned state binding a segment needs. */
  segmentStateBytes(t: PlacedTensor, coordStart: number, len: number): number[];
  /**
   * Binding pairs one batch may take: up to this many batches of tensors in
   * buffers of their own (whose tensors all pass `laneable`) are merged into
   * one, each keeping its own parameter and gradient binding as a lane, so
   * that one dispatch of each kernel updates them all. Every dispatch with a
   * writable binding waits for the previous one to finish (wgpu puts a
   * barrier before it), so one per tensor leaves the GPU part idle at each
   * tensor's end. @default {1}
   */
  lanes?: number;
  /** Whether tensor `t` may share a batch with other buffers' tensors. @default {() => false} */
  laneable?(t: PlacedTensor): boolean;
  /**
   * Batches of more elements than this keep their dispatches: the GPU's
   * idle end is a small part of such a dispatch, and on the H200 merging
   * binding-sized batches made the step slower (bench/RESULTS.md, round 19).
   * @default {Infinity}
   */
  laneBelow?: number;
}

/** The plan plus the arena buffers it allocated (owned by the caller). */
export interface Plan {
  /** Batches, each updated by one dispatch per kernel. */
  batches: Batch[];
  /** Gather arenas to destroy with the optimizer. */
  arenas: GPUBuffer[];
  /** Bytes of the gather arenas. */
  arenaBytes: number;
}

const COPY = GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

const alignDown = (x: number, a: number) => Math.floor(x / a) * a;
const alignUp = (x: number, a: number) => Math.ceil(x / a) * a;

/**
 * Plans the batches of `tensors`.
 *
 * @example
 * ```ts
 * import { requestDevice } from "./device.ts";
 * import { planDispatch } from "./plan.ts";
 * import { validateTensors } from "./tensors.ts";
 * const device = await requestDevice();
 * const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
 * const make = () => ({ param: device.createBuffer({ size: 40, usage }), grad: device.createBuffer({ size: 40, usage }), length: 10 });
 * const tensors = validateTensors([[make(), make(), make()]], 4);
 * const plan = planDispatch(device, tensors, {
 *   bytesPerElement: 4, bindLimit: 1 << 20, offsetAlignment: 256, gatherBelow: 65536,
 *   chunkUnit: () => 8, segmentStateBytes: (_t, _s, len) => [8 * len],
 * });
 * console.log(plan.batches.length, plan.batches[0].segments.length); // 1 3
 * device.destroy();
 * ```
 */
export function planDispatch(
  device: GPUDevice,
  tensors: PlacedTensor[],
  o: PlanOptions,
): Plan {
  const bpe = o.bytesPerElement;
  const room = o.bindLimit - o.offsetAlignment; // payload that always fits
  const uses = new Map<GPUBuffer, number>();
  for (const t of tensors) {
    uses.set(t.param, (uses.get(t.param) ?? 0) + 1);
    uses.set(t.grad, (uses.get(t.grad) ?? 0) + 1);
  }
  const canGather = (t: PlacedTensor) =>
    t.length <= o.gatherBelow && t.length * bpe <= room &&
    o.segmentStateBytes(t, 0, t.length).every((b) => b <= room) &&
    uses.get(t.param) === 1 &&
    uses.get(t.grad) === 1 && (t.param.usage & COPY) === COPY &&
    (t.grad.usage & GPUBufferUsage.COPY_SRC) !== 0;
  let gathered = tensors.filter(canGather);
  if (gathered.length < 2) gathered = [];
  const inArena = new Set(gathered);
  const batches: Batch[] = [];

  // Tensors as they lie: bucket by (param buffer, grad buffer), pack by offset.
  const buckets = new Map<GPUBuffer, Map<GPUBuffer, PlacedTensor[]>>();
  for (const t of tensors) {
    if (inArena.has(t)) continue;
    const byGrad = buckets.get(t.param) ?? new Map();
    buckets.set(t.param, byGrad);
    byGrad.set(t.grad, [...(byGrad.get(t.grad) ?? []), t]);
  }
  for (const byGrad of buckets.values()) {
    for (const list of byGrad.values()) {
      list.sort((a, b) => a.offset - b.offset);
      let current: PlacedTensor[] = [];
      const flush = () => {
        if (current.length) batches.push(nativeBatch(current, bpe, o));
        current = [];
      };
      for (const t of list) {
        if (!fitsWhole([t], bpe, o, room)) {
          flush();
          batches.push(...chunkTensor(t, bpe, o, room));
          continue;
        }
        if (!fitsWhole([...current, t], bpe, o, room)) flush();
        current.push(t);
      }
      flush();
    }
  }

  if ((o.lanes ?? 1) > 1) {
    const merged = mergeLanes(batches, tensors, o, room);
    batches.length = 0;
    batches.push(...merged);
  }

  // Small tensors in buffers of their own: gather into arenas.
  const arenas: GPUBuffer[] = [];
  let arenaBytes = 0;
  let batch: PlacedTensor[] = [];
  const arenaFor = (list: PlacedTensor[]) => {
    const offsets: number[] = [];
    let cursor = 0;
    for (const t of list) {
      offsets.push(cursor);
      cursor = alignUp(cursor + t.length * bpe, 32);
    }
    const size = Math.max(cursor, 4);
    const param = device.createBuffer({
      label: "microadam gather params",
      size,
      usage: GPUBufferUsage.STORAGE | COPY,
    });
    const grad = device.createBuffer({
      label: "microadam gather grads",
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    arenas.push(param, grad);
    arenaBytes += 2 * size;
    batches.push({
      params: { buffer: param, offset: 0, size },
      grads: { buffer: grad, offset: 0, size },
      segments: list.map((t, i) => ({
        tensor: t.index,
        coordStart: 0,
        len: t.length,
        paramOff: offsets[i] / bpe,
        gradOff: offsets[i] / bpe,
      })),
      gather: list.map((t, i) => ({
        tensor: t.index,
        param: t.param,
        paramOffset: t.offset * bpe,
        grad: t.grad,
        gradOffset: t.offset * bpe,
        arenaOffset: offsets[i],
        bytes: alignUp(t.length * bpe, 4),
      })),
    });
  };
  for (const t of gathered) {
    const next = [...batch, t];
    const bytes = next.reduce((s, x) => alignUp(s + x.length * bpe, 32), 0);
    const state = sumState(whole(next), o);
    if (batch.length && (bytes > room || state.some((b) => b > room))) {
      arenaFor(batch);
      batch = [t];
    } else {
      batch = next;
    }
  }
  if (batch.length) arenaFor(batch);
  return { batches, arenas, arenaBytes };
}

/**
 * Whether every segment of a batch starts and ends on a 16-byte boundary
 * (f32 elements: offsets and lengths multiples of 4), so that the
 * elementwise kernels may read and write four elements at a time.
 *
 * @example
 * ```ts
 * import { vec4Aligned } from "./plan.ts";
 * const seg = { tensor: 0, coordStart: 0, len: 8, paramOff: 4, gradOff: 0 };
 * console.log(vec4Aligned([seg]), vec4Aligned([{ ...seg, len: 7 }])); // true false
 * ```
 */
export function vec4Aligned(segments: readonly Segment[]): boolean {
  return segments.every((s) =>
    s.len % 4 === 0 && s.paramOff % 4 === 0 && s.gradOff % 4 === 0
  );
}

// Bytes of each state binding that ranges of tensors need together.
function sumState(
  pieces: { t: PlacedTensor; start: number; len: number }[],
  o: PlanOptions,
): number[] {
  const total: number[] = [];
  for (const { t, start, len } of pieces) {
    o.segmentStateBytes(t, start, len).forEach((b, i) =>
      total[i] = (total[i] ?? 0) + b
    );
  }
  return total;
}

// Whole tensors as sumState's pieces.
const whole = (list: PlacedTensor[]) =>
  list.map((t) => ({ t, start: 0, len: t.length }));

// Batches of laneable tensors merged, up to o.lanes at a time and in
// order, into batches with one binding pair per lane. A lane's parameter
// buffer is writable, so no two lanes of a batch share a buffer (WebGPU
// refuses a writable binding that aliases another), and the merged state
// must still fit one binding.
function mergeLanes(
  batches: Batch[],
  tensors: PlacedTensor[],
  o: PlanOptions,
  room: number,
): Batch[] {
  const lanes = o.lanes ?? 1;
  const laneable = (b: Batch) =>
    !b.gather && !b.lanes &&
    b.segments.reduce((n, s) => n + s.len, 0) <= (o.laneBelow ?? Infinity) &&
    b.segments.every((s) => o.laneable?.(tensors[s.tensor]) ?? false);
  const state = (list: Batch[]) =>
    sumState(
      list.flatMap((b) =>
        b.segments.map((s) => ({
          t: tensors[s.tensor],
          start: s.coordStart,
          len: s.len,
        }))
      ),
      o,
    );
  const out: Batch[] = [];
  let group: Batch[] = [];
  const flush = () => {
    if (group.length === 1) out.push(group[0]);
    if (group.length > 1) {
      out.push({
        params: group[0].params,
        grads: group[0].grads,
        lanes: group.slice(1).map((b) => ({
          params: b.params,
          grads: b.grads,
        })),
        segments: group.flatMap((b, lane) =>
          b.segments.map((s) => ({ ...s, lane }))
        ),
      });
    }
    group = [];
  };
  for (const b of batches) {
    if (!laneable(b)) {
      out.push(b);
      continue;
    }
    const buffers = new Set(
      group.flatMap((x) => [x.params.buffer, x.grads.buffer]),
    );
    const fits = group.length < lanes && !buffers.has(b.params.buffer) &&
      !buffers.has(b.grads.buffer) &&
      state([...group, b]).every((x) => x <= room);
    if (!fits) flush();
    group.push(b);
  }
  flush();
  return out;
}

function fitsWhole(
  list: PlacedTensor[],
  bpe: number,
  o: PlanOptions,
  room: number,
): boolean {
  const start = Math.min(...list.map((t) => t.offset)) * bpe;
  const end = Math.max(...list.map((t) => (t.offset + t.length) * bpe));
  return end - alignDown(start, o.offsetAlignment) <= room &&
    sumState(whole(list), o).every((b) => b <= room);
}

function binding(
  buffer: GPUBuffer,
  startByte: number,
  endByte: number,
  alignment: number,
): Binding {
  const offset = alignDown(startByte, alignment);
  return {
    buffer,
    offset,
    size: Math.min(alignUp(endByte, 4), buffer.size) - offset,
  };
}

function nativeBatch(
  list: PlacedTensor[],
  bpe: number,
  o: PlanOptions,
): Batch {
  const first = Math.min(...list.map((t) => t.offset)) * bpe;
  const last = Math.max(...list.map((t) => (t.offset + t.length) * bpe));
  const params = binding(list[0].param, first, last, o.offsetAlignment);
  const grads = binding(list[0].grad, first, last, o.offsetAlignment);
  return {
    params,
    grads,
    segments: list.map((t) => ({
      tensor: t.index,
      coordStart: 0,
      len: t.length,
      paramOff: (t.offset * bpe - params.offset) / bpe,
      gradOff: (t.offset * bpe - grads.offset) / bpe,
    })),
  };
}

function chunkTensor(
  t: PlacedTensor,
  bpe: number,
  o: PlanOptions,
  room: number,
): Batch[] {
  const unit = o.chunkUnit(t);
  let chunk = Math.floor(room / bpe / unit) * unit;
  while (
    chunk >= unit &&
    o.segmentStateBytes(t, 0, Math.min(chunk, t.length)).some((b) => b > room)
  ) {
    chunk = Math.floor(chunk / 2 / unit) * unit;
  }
  if (chunk < unit) {
    const need = Math.max(
      unit * bpe,
      ...o.segmentStateBytes(t, 0, Math.min(unit, t.length)),
    ) + o.offsetAlignment;
    throw new InvalidOptionError(
      `tensor ${t.index} ("${t.name}") cannot be split to fit a ${o.bindLimit}-byte storage binding: its smallest piece (${unit} elements, one top-k block and whole code words) needs ${need} bytes of binding (its largest buffer plus the ${o.offsetAlignment}-byte offset alignment); raise maxBindingBytes to at least ${need}, or lower topkBlockSize or window`,
    );
  }
  const batches: Batch[] = [];
  for (let start = 0; start < t.length; start += chunk) {
    const len = Math.min(chunk, t.length - start);
    const first = (t.offset + start) * bpe;
    const last = first + len * bpe;
    const params = binding(t.param, first, last, o.offsetAlignment);
    const grads = binding(t.grad, first, last, o.offsetAlignment);
    batches.push({
      params,
      grads,
      segments: [{
        tensor: t.index,
        coordStart: start,
        len,
        paramOff: (first - params.offset) / bpe,
        gradOff: (first - grads.offset) / bpe,
      }],
    });
  }
  return batches;
}
