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
 * Format version this module writes and the only one it reads (bumped when
 * the layout changes, so old readers refuse new files instead of misreading).
 *
 * @example
 * ```ts
 * import { CHECKPOINT_VERSION, encodeCheckpoint } from "./format.ts";
 * const bytes = encodeCheckpoint({ optimizer: "Adam", config: {}, step: 0, calls: 0, skipped: 0, ring: 0, tensors: [] });
 * console.log(new DataView(bytes.buffer).getUint32(8, true) === CHECKPOINT_VERSION); // true
 * ```
 */
export const CHECKPOINT_VERSION: number = 1;

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

interface Header {
  optimizer: string;
  config: Record<string, ConfigValue>;
  step: number;
  calls: number;
  skipped: number;
  ring: number;
  dataLength: number;
  tensors: TensorEntry[];
}

const align = (n: number): number => Math.ceil(n / ALIGN) * ALIGN;

const isCount = (v: unknown): v is number =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

const hex = (n: number): string => `0x${n.toString(16).padStart(8, "0")}`;

/**
 * Encodes `state` as a self-checking binary checkpoint. The counters must be
 * integers in [0, 2^53) and config numbers finite: JSON could not carry
 * anything else back exactly, so it is refused here rather than at load.
 *
 * @throws {CheckpointError} If a counter, length or config value cannot be stored exactly.
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
  const json = new TextEncoder().encode(JSON.stringify(header));
  const dataStart = align(PREFIX + json.byteLength);
  const total = dataStart + dataLength + TRAILER;

  const out = new Uint8Array(total); // zero-filled, so padding is zero
  const view = new DataView(out.buffer);
  out.set(CHECKPOINT_MAGIC, 0);
  view.setUint32(8, CHECKPOINT_VERSION, true);
  view.setUint32(12, json.byteLength, true);
  out.set(json, PREFIX);
  let p = 0;
  for (const t of tensors) {
    for (const b of t.buffers) out.set(parts[p++], dataStart + b.offset);
  }
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
  if (version !== CHECKPOINT_VERSION) {
    throw new CheckpointError(
      `unsupported checkpoint format version ${version}: this build reads version ${CHECKPOINT_VERSION} only`,
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
    header = parseHeader(bytes.subarray(PREFIX, PREFIX + headerLength));
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

  const tensors = header.tensors.map((t, i): TensorState => {
    const entries = t.buffers.map((b): [string, Uint8Array] => {
      if (
        b.offset % ALIGN !== 0 || b.offset + b.byteLength > header.dataLength
      ) {
        throw new CheckpointError(
          `tensor ${i} ("${t.name}"): buffer "${b.name}" range [${b.offset}, ${
            b.offset + b.byteLength
          }) is out of bounds or misaligned for the ${header.dataLength}-byte data section`,
        );
      }
      const start = dataStart + b.offset;
      // slice() copies into a new ArrayBuffer: aligned and independent of `bytes`.
      const copy = bytes.slice(start, start + b.byteLength);
      const got = crc32(copy);
      if (got !== b.crc32) {
        throw new CheckpointError(
          `checkpoint corrupt: tensor ${i} ("${t.name}") buffer "${b.name}" checksum mismatch (expected ${
            hex(b.crc32)
          }, computed ${hex(got)})`,
        );
      }
      return [b.name, copy];
    });
    // fromEntries defines own properties, so a buffer named "__proto__" stays data.
    return {
      name: t.name,
      length: t.length,
      buffers: Object.fromEntries(entries),
    };
  });
  return {
    optimizer: header.optimizer,
    config: header.config,
    step: header.step,
    calls: header.calls,
    skipped: header.skipped,
    ring: header.ring,
    tensors,
  };
}

function corrupt(stored: number, computed: number): CheckpointError {
  return new CheckpointError(
    `checkpoint corrupt: checksum mismatch (expected ${hex(stored)}, computed ${
      hex(computed)
    })`,
  );
}

/** Parses and type-checks the JSON header; throws CheckpointError naming the bad field. */
function parseHeader(raw: Uint8Array): Header {
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
  return {
    optimizer: h.optimizer as string,
    config: Object.fromEntries(config),
    step: h.step as number,
    calls: h.calls as number,
    skipped: h.skipped as number,
    ring: h.ring as number,
    dataLength: h.dataLength as number,
    tensors,
  };
}
