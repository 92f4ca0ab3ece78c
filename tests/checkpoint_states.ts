/**
 * Sample optimizer states and byte-level helpers shared by the checkpoint
 * tests (format, file, validate).
 */

import assert from "node:assert/strict";
import { CheckpointError } from "../src/errors.ts";
import { crc32 } from "../src/numeric/crc32.ts";
import type { OptimizerState } from "../src/core/state.ts";

/** Deterministic bytes (xorshift), so failures reproduce. */
export function bytesOf(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s & 0xff;
  }
  return out;
}

export function sampleState(): OptimizerState {
  return {
    optimizer: "MicroAdam",
    config: {
      window: 10,
      density: 0.01,
      lr: 1e-3 / 3, // not exactly representable in decimal: must round-trip
      dtype: "bf16",
      amsgrad: false,
      "unicode ✓ key": "välue",
    },
    step: 2 ** 40 + 7, // beyond u32
    calls: 2 ** 53 - 1,
    skipped: 3,
    ring: 7,
    tensors: [
      {
        name: "layer.0.weight",
        length: 13,
        buffers: {
          window: bytesOf(13, 1),
          codes: bytesOf(1, 2),
          stats: bytesOf(0, 3), // empty buffer
        },
      },
      { name: "bias", length: 0, buffers: {} },
      {
        name: "ünïcode",
        length: 5,
        buffers: { expAvg: bytesOf(20, 4), expAvgSq: bytesOf(7, 5) },
      },
    ],
  };
}

export function smallState(): OptimizerState {
  return {
    optimizer: "Adam",
    config: { amsgrad: true },
    step: 1,
    calls: 1,
    skipped: 0,
    ring: 0,
    tensors: [{
      name: "w",
      length: 3,
      buffers: { m: bytesOf(5, 9), v: bytesOf(3, 10) },
    }],
  };
}

/** Rewrites the trailing CRC so a crafted change is judged on its own merits. */
export function fixCrc(bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  view.setUint32(
    bytes.byteLength - 4,
    crc32(bytes.subarray(0, bytes.byteLength - 4)),
    true,
  );
  return bytes;
}

/** Replaces the JSON header (keeping the layout) and fixes the CRC. */
export function withHeader(
  bytes: Uint8Array,
  edit: (h: Record<string, unknown>) => void,
): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hlen = view.getUint32(12, true);
  const h = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + hlen)));
  const dataStart = Math.ceil((16 + hlen) / 8) * 8;
  edit(h);
  const json = new TextEncoder().encode(JSON.stringify(h));
  const newStart = Math.ceil((16 + json.length) / 8) * 8;
  const rest = bytes.subarray(dataStart);
  const out = new Uint8Array(newStart + rest.length);
  out.set(bytes.subarray(0, 16));
  new DataView(out.buffer).setUint32(12, json.length, true);
  out.set(json, 16);
  out.set(rest, newStart);
  return fixCrc(out);
}

export function throwsCheckpoint(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof CheckpointError, `not a CheckpointError: ${e}`);
    assert.match(e.message, pattern);
    return true;
  });
}
