/**
 * Moving an optimizer's GPU state to and from plain bytes. A tensor's state
 * buffer (e.g. MicroAdam's `window`) may be spread over several buffer
 * ranges (one per chunk of a tensor split past the binding limit); in a
 * state dict it is one byte array, the ranges concatenated in coordinate
 * order, the same bytes the CPU reference holds.
 *
 * @module
 */

import { type BufferRange, readRanges } from "../gpu/buffers.ts";
import {
  STEP_READBACK_BYTES,
  type StepHeader,
  StepScalars,
} from "./step_scalars.ts";

/** One tensor's state: named buffers, each a list of ranges in coordinate order. */
export type TensorStateRanges = Record<string, BufferRange[]>;

/** Byte size of each named state buffer of one tensor. */
export function stateSizes(ranges: TensorStateRanges): Record<string, number> {
  return Object.fromEntries(
    Object.entries(ranges).map((
      [k, list],
    ) => [k, list.reduce((s, r) => s + r.size, 0)]),
  );
}

/**
 * Reads the step header and every tensor's state with one submit and one map.
 *
 * @returns the header and, per tensor, each named buffer as one byte array.
 */
export async function readState(
  device: GPUDevice,
  stepBuffer: GPUBuffer,
  perTensor: readonly TensorStateRanges[],
): Promise<
  { header: StepHeader; buffers: Record<string, Uint8Array>[] }
> {
  const ranges: BufferRange[] = [{
    buffer: stepBuffer,
    offset: 0,
    size: STEP_READBACK_BYTES,
  }];
  for (const r of perTensor) {
    for (const list of Object.values(r)) ranges.push(...list);
  }
  const bytes = await readRanges(device, ranges);
  let next = 1;
  const buffers = perTensor.map((r) =>
    Object.fromEntries(
      Object.entries(r).map(([key, list]) => {
        const parts = bytes.slice(next, next += list.length);
        const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
        let at = 0;
        for (const p of parts) {
          out.set(p, at);
          at += p.length;
        }
        return [key, out];
      }),
    )
  );
  return { header: StepScalars.decode(bytes[0]), buffers };
}

/**
 * Queues the writes of every tensor's state (already validated: each buffer
 * has exactly the bytes its ranges hold).
 */
export function writeState(
  queue: GPUQueue,
  perTensor: readonly TensorStateRanges[],
  buffers: readonly Record<string, Uint8Array>[],
): void {
  perTensor.forEach((r, i) => {
    for (const [key, list] of Object.entries(r)) {
      const data = buffers[i][key];
      let at = 0;
      for (const range of list) {
        const copy = data.slice(at, at + range.size);
        at += range.size;
        queue.writeBuffer(range.buffer, range.offset, copy);
      }
    }
  });
}
