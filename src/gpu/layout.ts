/**
 * Every structure that TypeScript and WGSL both read, declared once. Each
 * {@link StructLayout} knows its fields and types; from it come the WGSL
 * `struct` text that src/gpu/kernels.ts puts ahead of every kernel and the
 * TypeScript encoders that fill the buffers (src/gpu/segments.ts,
 * src/optim/step_scalars.ts). The shared constants (tile sizes, the gradient
 * limit) are emitted the same way. A kernel therefore cannot read a field at
 * another offset than the one TypeScript wrote: tests/layout_test.ts reads
 * every field back on the GPU by name.
 *
 * Only 4-byte scalars (`u32`, `f32`), fixed arrays of them, and one trailing
 * runtime-sized array of another layout are allowed: with them WGSL's
 * storage and uniform layout rules put field `i` at the sum of the sizes
 * before it, which is what the encoders assume.
 *
 * @module
 */

import { GRADIENT_LIMIT_LOG2 } from "../core/limits.ts";
import type { DType } from "../core/options.ts";

/** A WGSL scalar type the layouts use. */
export type ScalarType = "u32" | "f32";

/** One field: a scalar, or `count` of them (a fixed-size array). */
export interface FieldSpec<N extends string = string> {
  /** Field name, the same in WGSL and TypeScript. */
  name: N;
  /** Element type. */
  type: ScalarType;
  /** Array length; a plain scalar when absent. */
  count?: number;
  /** What it holds (becomes a WGSL comment). */
  doc?: string;
}

/** Values of a layout's scalar fields, by name (absent fields encode as 0). */
export type FieldValues<N extends string> = Partial<Record<N, number>>;

/**
 * A struct shared by TypeScript and WGSL.
 *
 * @example
 * ```ts
 * import { StructLayout } from "./layout.ts";
 * const pair = new StructLayout("Pair", [
 *   { name: "lo", type: "u32" },
 *   { name: "scale", type: "f32" },
 * ]);
 * console.log(pair.wgsl().includes("scale: f32,")); // true
 * console.log(Array.from(new Uint32Array(pair.encode({ lo: 7 }).buffer))); // [ 7, 0 ]
 * console.log(pair.offset("scale"), pair.bytes); // 4 8
 * ```
 */
export class StructLayout<N extends string = string> {
  /** WGSL struct name. */
  readonly name: string;
  /** Fields in declaration order. */
  readonly fields: readonly FieldSpec<N>[];
  /** A trailing runtime-sized array of another layout, if any. */
  readonly tail?: { name: string; of: StructLayout; doc?: string };
  /** Bytes of the fixed part (all fields, the tail excluded). */
  readonly bytes: number;
  readonly #offsets = new Map<N, number>();

  /**
   * @param name WGSL struct name.
   * @param fields Fields in order.
   * @param tail A trailing runtime-sized array of another layout.
   */
  constructor(
    name: string,
    fields: readonly FieldSpec<N>[],
    tail?: { name: string; of: StructLayout; doc?: string },
  ) {
    this.name = name;
    this.fields = fields;
    this.tail = tail;
    let at = 0;
    for (const f of fields) {
      if (this.#offsets.has(f.name)) {
        throw new Error(`${name}: field ${f.name} declared twice`);
      }
      this.#offsets.set(f.name, at);
      at += 4 * (f.count ?? 1);
    }
    this.bytes = at;
  }

  /** Byte offset of a field. */
  offset(field: N): number {
    const at = this.#offsets.get(field);
    if (at === undefined) throw new Error(`${this.name} has no field ${field}`);
    return at;
  }

  /** The WGSL declaration. */
  wgsl(): string {
    const lines = this.fields.map((f) => {
      const type = f.count === undefined
        ? f.type
        : `array<${f.type}, ${f.count}>`;
      return `  ${f.name}: ${type},${f.doc ? ` // ${f.doc}` : ""}`;
    });
    if (this.tail) {
      lines.push(
        `  ${this.tail.name}: array<${this.tail.of.name}>,${
          this.tail.doc ? ` // ${this.tail.doc}` : ""
        }`,
      );
    }
    return `struct ${this.name} {\n${lines.join("\n")}\n}`;
  }

  /**
   * Writes scalar fields into `view` at byte `at` (fields not given are left
   * as they are), and returns the view.
   */
  write(view: DataView, values: FieldValues<N>, at = 0): DataView {
    for (const f of this.fields) {
      const v = values[f.name];
      if (v === undefined) continue;
      if (f.count !== undefined) {
        throw new Error(`${this.name}.${f.name} is an array`);
      }
      const o = at + this.offset(f.name);
      if (f.type === "f32") view.setFloat32(o, v, true);
      else view.setUint32(o, v >>> 0, true);
    }
    return view;
  }

  /** The fixed part holding `values` (others 0), as bytes. */
  encode(values: FieldValues<N>): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(this.bytes);
    this.write(new DataView(out.buffer), values);
    return out;
  }

  /** The scalar fields held in `bytes` (at least up to the last one read). */
  decode(bytes: Uint8Array, at = 0): Record<N, number> {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const out = {} as Record<N, number>;
    for (const f of this.fields) {
      if (f.count !== undefined) continue;
      const o = at + this.offset(f.name);
      if (o + 4 > bytes.byteLength) continue;
      out[f.name] = f.type === "f32"
        ? view.getFloat32(o, true)
        : view.getUint32(o, true);
    }
    return out;
  }
}

// ---- The layouts ------------------------------------------------------------

/** Per-optimizer constants (the `cfg` uniform). */
export const CONFIG: StructLayout<
  | "beta1"
  | "beta2"
  | "eps"
  | "window"
  | "ef_block"
  | "kind"
  | "amsgrad"
  | "decoupled"
  | "one"
> = new StructLayout("Config", [
  { name: "beta1", type: "f32" },
  { name: "beta2", type: "f32" },
  { name: "eps", type: "f32" },
  { name: "window", type: "u32", doc: "MicroAdam m" },
  { name: "ef_block", type: "u32", doc: "MicroAdam Q" },
  { name: "kind", type: "u32", doc: "0 Adam family, 1 MicroAdam" },
  { name: "amsgrad", type: "u32" },
  {
    name: "decoupled",
    type: "u32",
    doc: "weight decay: 1 decoupled (AdamW), 0 L2 (Adam)",
  },
  {
    name: "one",
    type: "f32",
    doc: "1.0, which the shader compilers cannot fold (see bf16_round_split)",
  },
]);

/** One param group's learning rate and weight decay at a step (from the CPU). */
export const GROUP_HYPER: StructLayout<"lr" | "wd" | "decay" | "neg_lr"> =
  new StructLayout("GroupHyper", [
    { name: "lr", type: "f32" },
    { name: "wd", type: "f32" },
    {
      name: "decay",
      type: "f32",
      doc: "f32(1 - lr*wd), computed in f64 on the CPU",
    },
    { name: "neg_lr", type: "f32" },
  ]);

/**
 * The per-call part of the step scalars, as the CPU writes it at every
 * `step()` call into its slot of a ring (its number and each group's
 * hyperparameters); the prologue copies the slot into `Step`.
 */
export const STEP_CALL: StructLayout<"call" | "call_pad"> = new StructLayout(
  "StepCall",
  [
    {
      name: "call",
      type: "u32",
      doc:
        "number of this step() call (1, 2, ...), written by the CPU with the group hyperparameters; the prologue refuses a step whose slot another call overwrote",
    },
    { name: "call_pad", type: "u32", count: 3 },
  ],
  { name: "param_groups", of: GROUP_HYPER },
);

/**
 * Step scalars: a header the prologue kernel writes (the step counter lives
 * on the GPU, so a skipped step is decided without a round trip), then the
 * per-call part ({@link STEP_CALL}), which the prologue copies from the
 * call's ring slot.
 */
export const STEP: StructLayout<
  | "skip"
  | "t"
  | "slot"
  | "ring"
  | "skipped"
  | "bad_tensor"
  | "c1"
  | "c2"
  | "calls"
  | "bad_call"
  | "refused"
  | "reserved"
  | "call"
  | "call_pad"
> = new StructLayout("Step", [
  {
    name: "skip",
    type: "u32",
    doc: "1: this step is skipped, every later kernel returns at once",
  },
  { name: "t", type: "u32", doc: "applied steps, this one included" },
  {
    name: "slot",
    type: "u32",
    doc: "MicroAdam: window slot written this step",
  },
  { name: "ring", type: "u32", doc: "MicroAdam: slot of the next step" },
  { name: "skipped", type: "u32", doc: "steps skipped so far" },
  {
    name: "bad_tensor",
    type: "u32",
    doc:
      "1 + index of the first non-finite tensor of the last skip; FOUND_INF_SKIP: the caller's flag",
  },
  { name: "c1", type: "f32", doc: "MicroAdam: (1-b1)/(1-b1^t); Adam: 1-b1^t" },
  {
    name: "c2",
    type: "f32",
    doc: "MicroAdam: (1-b2)/(1-b2^t); Adam: sqrt(1-b2^t)",
  },
  {
    name: "calls",
    type: "u32",
    doc: "step calls executed (applied, skipped or refused)",
  },
  {
    name: "bad_call",
    type: "u32",
    doc: "`calls` at the last non-finite skip",
  },
  {
    name: "refused",
    type: "u32",
    doc: "calls refused: their hyperparameter slot was overwritten",
  },
  { name: "reserved", type: "u32", count: 5 },
  ...STEP_CALL.fields,
], { name: "param_groups", of: GROUP_HYPER });

/** Bytes of the `Step` header the prologue owns (before the per-call part). */
export const STEP_HEADER_BYTES: number = STEP.offset("call");
/** Bytes of the header that status and state dicts read back. */
export const STEP_READBACK_BYTES: number = STEP.offset("reserved");

/** A contiguous range of one tensor inside one batch. */
export const SEG: StructLayout<
  | "coord_start"
  | "len"
  | "d"
  | "param_off"
  | "grad_off"
  | "codes_off"
  | "window_off"
  | "stats_off"
  | "block"
  | "k_block"
  | "k_tail"
  | "first_block"
  | "first_tile"
  | "param_group"
  | "tensor"
  | "state_off"
  | "stage_off"
  | "lane"
> = new StructLayout("Seg", [
  {
    name: "coord_start",
    type: "u32",
    doc: "first element, as a coordinate of the tensor",
  },
  { name: "len", type: "u32", doc: "elements in the segment" },
  { name: "d", type: "u32", doc: "elements in the whole tensor" },
  {
    name: "param_off",
    type: "u32",
    doc: "element offset of the segment in the params binding",
  },
  { name: "grad_off", type: "u32", doc: "element offset in the grads binding" },
  {
    name: "codes_off",
    type: "u32",
    doc: "MicroAdam: u32 word of the segment's first EF code",
  },
  {
    name: "window_off",
    type: "u32",
    doc: "MicroAdam: window entry of the segment's first block",
  },
  {
    name: "stats_off",
    type: "u32",
    doc: "MicroAdam: EF block index of the tensor's element 0",
  },
  { name: "block", type: "u32", doc: "MicroAdam: full top-k block size" },
  { name: "k_block", type: "u32", doc: "MicroAdam: entries per full block" },
  { name: "k_tail", type: "u32", doc: "MicroAdam: entries of the tail block" },
  {
    name: "first_block",
    type: "u32",
    doc: "prefix sum of blocks over the table's segments",
  },
  { name: "first_tile", type: "u32", doc: "prefix sum of TILE-element tiles" },
  { name: "param_group", type: "u32", doc: "param group index" },
  { name: "tensor", type: "u32", doc: "tensor index, for error reports" },
  {
    name: "state_off",
    type: "u32",
    doc: "Adam: element offset in the moment buffers",
  },
  {
    name: "stage_off",
    type: "u32",
    doc: "MicroAdam: word of the segment's staged window row in `work`",
  },
  {
    name: "lane",
    type: "u32",
    doc: "the batch's binding pair holding the segment (one-pass MicroAdam)",
  },
]);

/** A batch's segment table: a header, then the segments. */
export const SEG_TABLE: StructLayout<
  "num_segs" | "total_blocks" | "total_tiles" | "hint_off"
> = new StructLayout("SegTable", [
  { name: "num_segs", type: "u32" },
  { name: "total_blocks", type: "u32" },
  { name: "total_tiles", type: "u32" },
  {
    name: "hint_off",
    type: "u32",
    doc:
      "one-pass MicroAdam: word of `work` holding EF block 0's selection hint",
  },
], { name: "segs", of: SEG });

/** Every shared layout, in the order their WGSL is emitted. */
export const LAYOUTS: readonly StructLayout[] = [
  CONFIG,
  GROUP_HYPER,
  STEP_CALL,
  STEP,
  SEG,
  SEG_TABLE,
];

// ---- Shared constants -------------------------------------------------------

/** Elements per tile of the elementwise kernels. */
export const TILE = 1024;
/** Threads per workgroup of the tiled kernels. */
export const TILE_THREADS = 128;
/** Tiles each workgroup of the non-finite check (kernels/check_finite.wgsl) reads. */
export const CHECK_TILES = 8;

/**
 * Limits of MicroAdam's one-pass kernels (`fastPath()` in
 * src/optim/microadam.ts decides with them; the kernels size their arrays
 * with them): a top-k block of at most FAST_BLOCK elements (16 per thread
 * of a 256-thread workgroup), a window of at most FAST_WINDOW slots and
 * FAST_WINDOW_ENTRIES entries per block, at most FAST_K entries per row.
 */
export const FAST_BLOCK = 4096;
/** See {@link FAST_BLOCK}. */
export const FAST_WINDOW = 16;
/** See {@link FAST_BLOCK}. */
export const FAST_WINDOW_ENTRIES = 512;
/** See {@link FAST_BLOCK}. */
export const FAST_K = 256;
/**
 * Parameter/gradient binding pairs (lanes) MicroAdam's one-pass kernels take
 * where the device allows the bindings (see `fastLanes` in
 * src/gpu/kernels.ts): up to this many tensors in buffers of their own share
 * one dispatch of each kernel.
 */
export const FAST_LANES = 4;

/**
 * Workgroups each of MicroAdam's one-pass kernels is dispatched with, at
 * most (see {@link fastGrid}). On the H200 at 2^28 (65,536 blocks), the
 * select kernel ran fastest on 16384 (four blocks a workgroup: it beat
 * 1024, 4096 and one workgroup per block, and in round 27 8192 and 32768),
 * the bf16 update kernel on 32768 (two blocks a workgroup: 3 % faster than
 * on 16384, round 27; 1.8 % faster than on one block a workgroup, round
 * 29), the f32 update kernel on one block a workgroup (`updateF32`: 2.0 %
 * faster than on two, the f32 step 0.8 % at 2^28 and 0.3 % on the
 * LLaMA-2-7B shapes; bench/RESULTS.md, rounds 29 and 33).
 */
export const FAST_GRID: Readonly<
  Record<"select" | "update" | "updateF32", number>
> = {
  select: 16384,
  update: 32768,
  updateF32: 65536,
};

/**
 * Blocks each workgroup of a one-pass kernel walks, at least, where a
 * dispatch has that many (the f32 update kernel excepted: see
 * {@link FAST_GRID}): the select kernel looks up its next block's place
 * while it works on the current one, and what starting a workgroup costs
 * (the workgroup memory WGSL zeroes, the update's decay tables) is paid
 * once per workgroup. With one block a workgroup (the LLaMA shapes' smaller
 * batches, and 2^26 and below), a step was 2 % (bf16, LLaMA-2-7B) and 2-3 %
 * (2^26) slower on the H200 (bench/RESULTS.md, round 27).
 */
export const FAST_MIN_BLOCKS_PER_WORKGROUP = 2;

/**
 * How many workgroups a one-pass kernel (`stage`, for parameters of
 * `dtype`) is dispatched with over `blocks` top-k blocks: each walks blocks
 * w, w + grid, ..., at least {@link FAST_MIN_BLOCKS_PER_WORKGROUP} where
 * there are that many, on at most {@link FAST_GRID}[stage] workgroups; the
 * f32 update kernel one block a workgroup, on at most
 * `FAST_GRID.updateF32`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fastGrid } from "./layout.ts";
 *
 * assert.equal(fastGrid("select", 65536, "f32"), 16384); // four blocks a workgroup
 * assert.equal(fastGrid("update", 65536, "bf16"), 32768); // two
 * assert.equal(fastGrid("update", 65536, "f32"), 65536); // one
 * assert.equal(fastGrid("select", 4097, "bf16"), 2049);
 * assert.equal(fastGrid("update", 1, "bf16"), 1);
 * ```
 */
export function fastGrid(
  stage: "select" | "update",
  blocks: number,
  dtype: DType,
): number {
  if (stage === "update" && dtype === "f32") {
    return Math.min(blocks, FAST_GRID.updateF32);
  }
  return Math.min(
    Math.ceil(blocks / FAST_MIN_BLOCKS_PER_WORKGROUP),
    FAST_GRID[stage],
  );
}

/**
 * Distinct call identities the prologue can check a step's hyperparameter
 * slot against (`step.call mod CALL_IDS`, see src/optim/step_scalars.ts): a
 * slot overwritten by a later call is refused unless CALL_IDS or more steps
 * wait for one submit.
 */
export const CALL_IDS = 1024;

/**
 * Word of the non-finite flag buffer (src/optim/step_scalars.ts) that holds
 * the caller's found-inf flag for the prologue: `step({ foundInf })` copies
 * it there before the step's pass. Word 0 is the first non-finite tensor.
 */
export const FOUND_INF_WORD = 1;

/**
 * `Step.bad_tensor` of a step skipped for the caller's found-inf flag rather
 * than for a tensor of its own (those are 1 + the tensor's index).
 */
export const FOUND_INF_SKIP = 0xffffffff;

/**
 * Constants of the non-finite flags, which only the prologue sees: as shared
 * constants they shifted the SPIR-V ids of every other kernel.
 */
export const FLAG_CONSTANTS: Readonly<Record<string, number>> = {
  FOUND_INF_WORD,
  FOUND_INF_SKIP,
};

/** Constants every kernel sees, by name (all u32). */
export const SHARED_CONSTANTS: Readonly<Record<string, number>> = {
  GRADIENT_LIMIT_LOG2,
  CALL_IDS,
  TILE,
  TILE_THREADS,
  CHECK_TILES,
  FAST_BLOCK,
  FAST_WINDOW,
  FAST_WINDOW_ENTRIES,
  FAST_K,
};

/**
 * The WGSL text of every shared constant and layout, put ahead of each
 * kernel.
 *
 * @example
 * ```ts
 * import { layoutWgsl } from "./layout.ts";
 * console.log(layoutWgsl().includes("struct Seg {")); // true
 * ```
 */
export function layoutWgsl(): string {
  return [constantsWgsl(SHARED_CONSTANTS), ...LAYOUTS.map((l) => l.wgsl())]
    .join("\n");
}

/**
 * WGSL `const` declarations (u32) of named constants.
 *
 * @example
 * ```ts
 * import { constantsWgsl } from "./layout.ts";
 * console.log(constantsWgsl({ A: 1, B: 0xffffffff })); // "const A: u32 = 1u;\nconst B: u32 = 4294967295u;"
 * ```
 */
export function constantsWgsl(
  constants: Readonly<Record<string, number>>,
): string {
  return Object.entries(constants).map(([k, v]) => `const ${k}: u32 = ${v}u;`)
    .join("\n");
}
