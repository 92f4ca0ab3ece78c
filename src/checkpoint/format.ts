/**
 * Versioned binary encoding of an {@link OptimizerState}.
 *
 * Layout (little-endian throughout):
 *
 * | bytes                    | content                                            |
 * | ------------------------ | -------------------------------------------------- |
 * | 8                        | magic `"MICROADM"`                                 |
 * | 4                        | u32 format version ({@link CHECKPOINT_VERSION})    |
 * | 4                        | u32 header byte length `H`                         |
 * | `H`                      | UTF-8 JSON header (see below)                      |
 * | 0–7                      | zero padding to an 8-byte boundary                 |
 * | `dataLength`             | raw buffers, each zero-padded to 8 bytes           |
 * | 4                        | u32 CRC-32 of every byte before it                 |
 *
 * The header is `{ optimizer, config, step, calls, skipped, ring, dataLength,
 * tensors: [{ name, length, buffers: [{ name, offset, byteLength, crc32 }] }] }`
 * with buffer offsets relative to the start of the data section. `dataLength`
 * lets a reader tell a truncated file from a header that points past the data.
 *
 * Version 2 adds two optional header fields, so that one file can hold a
 * whole training state: `params: [{ name, length, dtype, offset, byteLength,
 * crc32 }]`, model parameters whose bytes follow the optimizer's buffers in
 * the data section, and `meta`, a JSON object of the caller's. A checkpoint
 * without them is written as version 1, byte for byte what earlier builds
 * wrote, so they still read it; both versions are read.
 *
 * @module
 */

import { CheckpointError, describe } from "../errors.ts";
import { crc32 } from "../numeric/crc32.ts";
import type {
  ConfigValue,
  OptimizerState,
  TensorState,
} from "../core/state.ts";

/**
 * The newest format version, which this module reads along with every older
 * one (bumped when the layout changes, so old readers refuse new files
 * instead of misreading them). Files with parameters or metadata are written
 * as this version; files without, as version 1.
 *
 * @example
 * ```ts
 * import { CHECKPOINT_VERSION, encodeCheckpoint } from "./format.ts";
 * const state = { optimizer: "Adam", config: {}, step: 0, calls: 0, skipped: 0, ring: 0, tensors: [] };
 * const version = (b: Uint8Array) => new DataView(b.buffer).getUint32(8, true);
 * console.log(version(encodeCheckpoint(state)), version(encodeCheckpoint(state, { meta: { epoch: 1 } })) === CHECKPOINT_VERSION); // 1 true
 * ```
 */
export const CHECKPOINT_VERSION: number = 2;

/** Model parameters stored beside an optimizer state (format version 2). */
export interface ParamData {
  /** Tensor name (or its index as a string). */
  name: string;
  /** Element count. */
  length: number;
  /** Element type of `bytes`: f32 (4 bytes each) or bf16 bits (2 bytes each). */
  dtype: "f32" | "bf16";
  /** The values, little-endian. */
  bytes: Uint8Array;
}

/** What a version-2 checkpoint holds beside the optimizer state. */
export interface CheckpointExtras {
  /** Model parameters. @default {[]} */
  params?: ParamData[];
  /** A JSON object of the caller's (e.g. the epoch and data position). @default {undefined} */
  meta?: Record<string, unknown>;
}

/**
 * The 8 bytes every checkpoint starts with: ASCII `"MICROADM"`.
 *
 * @example
 * ```ts
 * import { CHECKPOINT_MAGIC, encodeCheckpoint } from "./format.ts";
 * const bytes = encodeCheckpoint({ optimizer: "Adam", config: {}, step: 0, calls: 0, skipped: 0, ring: 0, tensors: [] });
 * console.log(CHECKPOINT_MAGIC.every((b, i) => bytes[i] === b)); // true
 * ```
 */
export const CHECKPOINT_MAGIC: Uint8Array = new TextEncoder().encode(
  "MICROADM",
);

/** Bytes before the header: magic, version, header length. */
const PREFIX = 16;
/** Trailing CRC-32. */
const TRAILER = 4;
/** Buffer alignment in the file (8 covers every typed-array view). */
const ALIGN = 8;

interface BufferEntry {
  name: string;
  offset: number;
  byteLength: number;
  crc32: number;
}

interface TensorEntry {
  name: string;
  length: number;
  buffers: BufferEntry[];
}

interface ParamEntry {
  name: string;
  length: number;
  dtype: "f32" | "bf16";
  offset: number;
  byteLength: number;
  crc32: number;
}

interface Header {
  optimizer: string;
  config: Record<string, ConfigValue>;
  step: number;
  calls: number;
  skipped: number;
  ring: number;
  dataLength: number;
  tensors: TensorEntry[];
  params?: ParamEntry[];
  meta?: Record<string, unknown>;
}

const align = (n: number): number => Math.ceil(n / ALIGN) * ALIGN;

const isCount = (v: unknown): v is number =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

const hex = (n: number): string => `0x${n.toString(16).padStart(8, "0")}`;

/**
 * Encodes `state` as a self-checking binary checkpoint, with model
 * parameters and metadata when `extras` has them (format version 2; version
 * 1 otherwise). The counters must be integers in [0, 2^53) and config
 * numbers finite: JSON could not carry anything else back exactly, so it is
 * refused here rather than at load.
 *
 * @throws {CheckpointError} If a counter, length, config value, parameter or
 * metadata cannot be stored exactly.
 *
 * @example
 * ```ts
 * import { decodeCheckpoint, encodeCheckpoint } from "./format.ts";
 * const state = { optimizer: "Adam", config: { amsgrad: false }, step: 3, calls: 3, skipped: 0, ring: 0,
 *   tensors: [{ name: "w", length: 1, buffers: { expAvg: new Uint8Array(4), expAvgSq: new Uint8Array(4) } }] };
 * const back = decodeCheckpoint(encodeCheckpoint(state));
 * console.log(back.step, back.tensors[0].buffers.expAvg.byteLength); // 3 4
 * ```
 */
export function encodeCheckpoint(
  state: OptimizerState,
  extras: CheckpointExtras = {},
): Uint8Array<ArrayBuffer> {
  if (typeof state.optimizer !== "string") {
    throw new CheckpointError(
      `optimizer: expected a string, got ${describe(state.optimizer)}`,
    );
  }
  for (const k of ["step", "calls", "skipped", "ring"] as const) {
    if (!isCount(state[k])) {
      throw new CheckpointError(
        `${k}: expected an integer in [0, 2^53), got ${describe(state[k])}`,
      );
    }
  }
  for (const [k, v] of Object.entries(state.config)) {
    const ok = typeof v === "string" || typeof v === "boolean" ||
      (typeof v === "number" && Number.isFinite(v));
    if (!ok) {
      throw new CheckpointError(
        `config "${k}": expected a finite number, string or boolean, got ${
          describe(v)
        }`,
      );
    }
  }

  // Offsets depend only on buffer sizes, so the header can be built before
  // its own length (and thus the data start) is known.
  let dataLength = 0;
  const parts: Uint8Array[] = [];
  const tensors: TensorEntry[] = state.tensors.map(
    (t: TensorState, i: number) => {
      if (typeof t.name !== "string" || !isCount(t.length)) {
        throw new CheckpointError(
          `tensor ${i}: expected a string name and an integer length >= 0, got ${
            describe(t.name)
          } and ${describe(t.length)}`,
        );
      }
      const buffers = Object.entries(t.buffers).map(([name, bytes]) => {
        if (!(bytes instanceof Uint8Array)) {
          throw new CheckpointError(
            `tensor ${i} ("${t.name}"): buffer "${name}" must be a Uint8Array, got ${
              describe(bytes)
            }`,
          );
        }
        const entry = {
          name,
          offset: dataLength,
          byteLength: bytes.byteLength,
          crc32: crc32(bytes),
        };
        parts.push(bytes);
        dataLength += align(bytes.byteLength);
        return entry;
      });
      return { name: t.name, length: t.length, buffers };
    },
  );
  const params = (extras.params ?? []).map((p, i): ParamEntry => {
    const width = p.dtype === "bf16" ? 2 : p.dtype === "f32" ? 4 : 0;
    if (
      typeof p.name !== "string" || !isCount(p.length) || width === 0 ||
      !(p.bytes instanceof Uint8Array) ||
      p.bytes.byteLength !== width * p.length
    ) {
      throw new CheckpointError(
        `param ${i} (${
          describe(p.name)
        }): expected a name, a length, dtype "f32" or "bf16" and length × 4 or × 2 bytes, got length ${
          describe(p.length)
        }, dtype ${describe(p.dtype)} and ${describe(p.bytes)}`,
      );
    }
    const entry = {
      name: p.name,
      length: p.length,
      dtype: p.dtype,
      offset: dataLength,
      byteLength: p.bytes.byteLength,
      crc32: crc32(p.bytes),
    };
    parts.push(p.bytes);
    dataLength += align(p.bytes.byteLength);
    return entry;
  });
  const meta = extras.meta;
  if (meta !== undefined) checkMeta(meta);
  const header: Header = {
    optimizer: state.optimizer,
    config: state.config,
    step: state.step,
    calls: state.calls,
    skipped: state.skipped,
    ring: state.ring,
    dataLength,
    tensors,
  };
  const version = extras.params !== undefined || meta !== undefined ? 2 : 1;
  if (version === 2) {
    header.params = params;
    if (meta !== undefined) header.meta = meta;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const dataStart = align(PREFIX + json.byteLength);
  const total = dataStart + dataLength + TRAILER;

  const out = new Uint8Array(total); // zero-filled, so padding is zero
  const view = new DataView(out.buffer);
  out.set(CHECKPOINT_MAGIC, 0);
  view.setUint32(8, version, true);
  view.setUint32(12, json.byteLength, true);
  out.set(json, PREFIX);
  let p = 0;
  for (const t of tensors) {
    for (const b of t.buffers) out.set(parts[p++], dataStart + b.offset);
  }
  for (const e of params) out.set(parts[p++], dataStart + e.offset);
  view.setUint32(
    total - TRAILER,
    crc32(out.subarray(0, total - TRAILER)),
    true,
  );
  return out;
}

/**
 * Decodes a checkpoint written by {@link encodeCheckpoint}. Every buffer in
 * the result is a fresh copy with its own `ArrayBuffer` (offset 0), so it can
 * be viewed as `Float32Array`/`Uint32Array` and outlives `bytes`.
 *
 * @throws {CheckpointError} If the bytes are truncated, not a checkpoint, of
 * another format version, corrupt (checksum mismatch) or inconsistent; the
 * message names which.
 *
 * @example
 * ```ts
 * import { decodeCheckpoint, encodeCheckpoint } from "./format.ts";
 * const bytes = encodeCheckpoint({ optimizer: "Adam", config: {}, step: 2 ** 40, calls: 2 ** 40, skipped: 0, ring: 0, tensors: [] });
 * console.log(decodeCheckpoint(bytes).step === 2 ** 40); // true
 * bytes[20] ^= 1;
 * try { decodeCheckpoint(bytes); } catch (e) { console.log((e as Error).name); } // CheckpointError
 * ```
 */
export function decodeCheckpoint(bytes: Uint8Array): OptimizerState {
  return decodeCheckpointWithExtras(bytes).state;
}

/**
 * Decodes a checkpoint with what version 2 adds: the model parameters (empty
 * for version 1) and the metadata (undefined when none was stored).
 *
 * @throws {CheckpointError} As {@link decodeCheckpoint}, and when a
 * parameter's checksum or range is wrong.
 *
 * @example
 * ```ts
 * import { decodeCheckpointWithExtras, encodeCheckpoint } from "./format.ts";
 * const state = { optimizer: "Adam", config: {}, step: 0, calls: 0, skipped: 0, ring: 0, tensors: [] };
 * const params = [{ name: "w", length: 1, dtype: "f32" as const, bytes: new Uint8Array(new Float32Array([2.5]).buffer) }];
 * const back = decodeCheckpointWithExtras(encodeCheckpoint(state, { params, meta: { epoch: 3 } }));
 * console.log(new Float32Array(back.params[0].bytes.buffer)[0], back.meta); // 2.5 { epoch: 3 }
 * ```
 */
export function decodeCheckpointWithExtras(
  bytes: Uint8Array,
): {
  state: OptimizerState;
  params: ParamData[];
  meta?: Record<string, unknown>;
} {
  const size = bytes.byteLength;
  if (size < PREFIX + TRAILER) {
    throw new CheckpointError(
      `checkpoint truncated: ${size} bytes is shorter than the smallest possible checkpoint (${
        PREFIX + TRAILER
      } bytes)`,
    );
  }
  for (let i = 0; i < CHECKPOINT_MAGIC.length; i++) {
    if (bytes[i] !== CHECKPOINT_MAGIC[i]) {
      throw new CheckpointError(
        'not a microadam checkpoint: the file does not start with the magic bytes "MICROADM"',
      );
    }
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, size);
  const version = view.getUint32(8, true);
  if (version < 1 || version > CHECKPOINT_VERSION) {
    throw new CheckpointError(
      `unsupported checkpoint format version ${version}: this build reads versions 1 to ${CHECKPOINT_VERSION}`,
    );
  }
  const headerLength = view.getUint32(12, true);
  if (PREFIX + headerLength + TRAILER > size) {
    throw new CheckpointError(
      `checkpoint truncated: its ${headerLength}-byte header does not fit in the ${size}-byte file`,
    );
  }

  // The checksum can only be located once the header says how long the file
  // is; if the header itself is unreadable, a bad checksum over the whole file
  // is the likelier story, so that is what gets reported.
  const wholeFileCrcError = (): CheckpointError | undefined => {
    const stored = view.getUint32(size - TRAILER, true);
    const computed = crc32(bytes.subarray(0, size - TRAILER));
    return stored === computed ? undefined : corrupt(stored, computed);
  };
  let header: Header;
  try {
    header = parseHeader(
      bytes.subarray(PREFIX, PREFIX + headerLength),
      version,
    );
  } catch (e) {
    throw wholeFileCrcError() ?? e;
  }

  const dataStart = align(PREFIX + headerLength);
  const expected = dataStart + header.dataLength + TRAILER;
  if (size < expected) {
    throw new CheckpointError(
      `checkpoint truncated (or its header corrupt): the header describes ${expected} bytes, the file has ${size}`,
    );
  }
  if (size > expected) {
    throw new CheckpointError(
      `checkpoint has ${
        size - expected
      } unexpected trailing bytes (or its header is corrupt): the header describes ${expected} bytes, the file has ${size}`,
    );
  }
  const err = wholeFileCrcError();
  if (err) throw err;

  // A checked copy of a range of the data section; `what` names it in errors.
  const section = (
    e: { offset: number; byteLength: number; crc32: number },
    what: string,
  ): Uint8Array => {
    if (e.offset % ALIGN !== 0 || e.offset + e.byteLength > header.dataLength) {
      throw new CheckpointError(
        `${what} range [${e.offset}, ${
          e.offset + e.byteLength
        }) is out of bounds or misaligned for the ${header.dataLength}-byte data section`,
      );
    }
    const start = dataStart + e.offset;
    // slice() copies into a new ArrayBuffer: aligned and independent of `bytes`.
    const copy = bytes.slice(start, start + e.byteLength);
    const got = crc32(copy);
    if (got !== e.crc32) {
      throw new CheckpointError(
        `checkpoint corrupt: ${what} checksum mismatch (expected ${
          hex(e.crc32)
        }, computed ${hex(got)})`,
      );
    }
    return copy;
  };
  const tensors = header.tensors.map((t, i): TensorState => {
    const entries = t.buffers.map((b): [string, Uint8Array] => [
      b.name,
      section(b, `tensor ${i} ("${t.name}") buffer "${b.name}"`),
    ]);
    // fromEntries defines own properties, so a buffer named "__proto__" stays data.
    return {
      name: t.name,
      length: t.length,
      buffers: Object.fromEntries(entries),
    };
  });
  const params = (header.params ?? []).map((p, i): ParamData => ({
    name: p.name,
    length: p.length,
    dtype: p.dtype,
    bytes: section(p, `param ${i} ("${p.name}")`),
  }));
  const state: OptimizerState = {
    optimizer: header.optimizer,
    config: header.config,
    step: header.step,
    calls: header.calls,
    skipped: header.skipped,
    ring: header.ring,
    tensors,
  };
  return header.meta === undefined
    ? { state, params }
    : { state, params, meta: header.meta };
}

/** Refuses metadata that JSON would not give back as it was. */
function checkMeta(meta: unknown): void {
  const bad = (path: string, v: unknown): never => {
    throw new CheckpointError(
      `meta${path}: expected JSON data (objects, arrays, strings, finite numbers, booleans, null), got ${
        typeof v === "number" ? String(v) : typeof v
      }`,
    );
  };
  const walk = (v: unknown, path: string): void => {
    if (v === null || typeof v === "string" || typeof v === "boolean") return;
    if (typeof v === "number") {
      if (!Number.isFinite(v)) bad(path, v);
      return;
    }
    if (Array.isArray(v)) {
      v.forEach((x, i) => walk(x, `${path}[${i}]`));
      return;
    }
    if (
      typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype
    ) {
      for (const [k, x] of Object.entries(v)) walk(x, `${path}.${k}`);
      return;
    }
    bad(path, v);
  };
  if (typeof meta !== "object" || meta === null || Array.isArray(meta)) {
    bad("", meta);
  }
  walk(meta, "");
}

function corrupt(stored: number, computed: number): CheckpointError {
  return new CheckpointError(
    `checkpoint corrupt: checksum mismatch (expected ${hex(stored)}, computed ${
      hex(computed)
    })`,
  );
}

/** Parses and type-checks the JSON header; throws CheckpointError naming the bad field. */
function parseHeader(raw: Uint8Array, version: number): Header {
  let h: unknown;
  try {
    h = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(raw));
  } catch (e) {
    throw new CheckpointError(
      `checkpoint header is not valid UTF-8 JSON: ${(e as Error).message}`,
    );
  }
  const bad = (what: string, v: unknown): never => {
    throw new CheckpointError(
      `checkpoint header invalid: ${what}, got ${describe(v)}`,
    );
  };
  const isObj = (v: unknown): v is Record<string, unknown> =>
    typeof v === "object" && v !== null && !Array.isArray(v);
  if (!isObj(h)) return bad("expected a JSON object", h);
  if (typeof h.optimizer !== "string") {
    bad("optimizer must be a string", h.optimizer);
  }
  if (!isObj(h.config)) bad("config must be an object", h.config);
  const config: [string, ConfigValue][] = [];
  for (const [k, v] of Object.entries(h.config as Record<string, unknown>)) {
    if (!["number", "string", "boolean"].includes(typeof v)) {
      bad(`config "${k}" must be a number, string or boolean`, v);
    }
    config.push([k, v as ConfigValue]);
  }
  for (const k of ["step", "calls", "skipped", "ring", "dataLength"]) {
    if (!isCount(h[k])) bad(`${k} must be an integer >= 0`, h[k]);
  }
  if (!Array.isArray(h.tensors)) bad("tensors must be an array", h.tensors);
  const tensors = (h.tensors as unknown[]).map((t, i): TensorEntry => {
    if (!isObj(t)) return bad(`tensor ${i} must be an object`, t);
    if (typeof t.name !== "string") {
      bad(`tensor ${i} name must be a string`, t.name);
    }
    if (!isCount(t.length)) {
      bad(`tensor ${i} length must be an integer >= 0`, t.length);
    }
    if (!Array.isArray(t.buffers)) {
      bad(`tensor ${i} buffers must be an array`, t.buffers);
    }
    const seen = new Set<string>();
    const buffers = (t.buffers as unknown[]).map((b, j): BufferEntry => {
      if (!isObj(b)) return bad(`tensor ${i} buffer ${j} must be an object`, b);
      if (typeof b.name !== "string" || seen.has(b.name)) {
        bad(`tensor ${i} buffer ${j} name must be a unique string`, b.name);
      }
      seen.add(b.name as string);
      for (const k of ["offset", "byteLength", "crc32"]) {
        if (!isCount(b[k])) {
          bad(
            `tensor ${i} buffer "${b.name}" ${k} must be an integer >= 0`,
            b[k],
          );
        }
      }
      return {
        name: b.name as string,
        offset: b.offset as number,
        byteLength: b.byteLength as number,
        crc32: b.crc32 as number,
      };
    });
    return { name: t.name as string, length: t.length as number, buffers };
  });
  const header: Header = {
    optimizer: h.optimizer as string,
    config: Object.fromEntries(config),
    step: h.step as number,
    calls: h.calls as number,
    skipped: h.skipped as number,
    ring: h.ring as number,
    dataLength: h.dataLength as number,
    tensors,
  };
  if (version < 2) return header;
  if (h.params !== undefined) {
    if (!Array.isArray(h.params)) bad("params must be an array", h.params);
    header.params = (h.params as unknown[]).map((p, i): ParamEntry => {
      if (!isObj(p)) return bad(`param ${i} must be an object`, p);
      if (typeof p.name !== "string") {
        bad(`param ${i} name must be a string`, p.name);
      }
      if (p.dtype !== "f32" && p.dtype !== "bf16") {
        bad(`param ${i} ("${p.name}") dtype must be "f32" or "bf16"`, p.dtype);
      }
      for (const k of ["length", "offset", "byteLength", "crc32"]) {
        if (!isCount(p[k])) {
          bad(`param ${i} ("${p.name}") ${k} must be an integer >= 0`, p[k]);
        }
      }
      const width = p.dtype === "bf16" ? 2 : 4;
      if (p.byteLength !== width * (p.length as number)) {
        bad(
          `param ${i} ("${p.name}") byteLength must be ${width} × length (${p.length})`,
          p.byteLength,
        );
      }
      return {
        name: p.name as string,
        length: p.length as number,
        dtype: p.dtype as "f32" | "bf16",
        offset: p.offset as number,
        byteLength: p.byteLength as number,
        crc32: p.crc32 as number,
      };
    });
  }
  if (h.meta !== undefined) {
    if (!isObj(h.meta)) bad("meta must be an object", h.meta);
    header.meta = h.meta as Record<string, unknown>;
  }
  return header;
}
