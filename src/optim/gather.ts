/**
 * The copies around a step for gathered batches: small tensors that live in
 * buffers of their own are copied into one arena before the step (gradients
 * and parameters) and their parameters copied back after it (see
 * `src/gpu/plan.ts`).
 *
 * @module
 */

import type { Batch } from "../gpu/plan.ts";

/** Encodes the copies of gathered tensors into their arenas. */
export function encodeGatherIn(
  encoder: GPUCommandEncoder,
  batches: readonly Batch[],
): void {
  for (const b of batches) {
    for (const c of b.gather ?? []) {
      encoder.copyBufferToBuffer(
        c.grad,
        c.gradOffset,
        b.grads.buffer,
        c.arenaOffset,
        c.bytes,
      );
      encoder.copyBufferToBuffer(
        c.param,
        c.paramOffset,
        b.params.buffer,
        c.arenaOffset,
        c.bytes,
      );
    }
  }
}

/** Encodes the copies of updated parameters from the arenas back to their tensors. */
export function encodeGatherOut(
  encoder: GPUCommandEncoder,
  batches: readonly Batch[],
): void {
  for (const b of batches) {
    for (const c of b.gather ?? []) {
      encoder.copyBufferToBuffer(
        b.params.buffer,
        c.arenaOffset,
        c.param,
        c.paramOffset,
        c.bytes,
      );
    }
  }
}
