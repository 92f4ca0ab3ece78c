/**
 * Checks that an {@link OptimizerState} fits the optimizer it is loaded into,
 * and names the first difference when it does not.
 *
 * @module
 */

import { CheckpointError, describe } from "../errors.ts";
import type { ConfigValue, OptimizerState } from "../optim/state.ts";

/** What the receiving optimizer expects. */
export interface ExpectedState {
  /** Optimizer kind. */
  optimizer: string;
  /** State-shaping configuration; every key must match exactly. */
  config: Record<string, ConfigValue>;
  /** Per tensor: length and the byte size of every state buffer. */
  tensors: { length: number; buffers: Record<string, number> }[];
}

/**
 * Throws {@link CheckpointError} unless `state` matches `expected`.
 *
 * @example
 * ```ts
 * import { assertStateMatches } from "./validate.ts";
 * const state = { optimizer: "Adam", config: { amsgrad: false }, step: 1, calls: 1, skipped: 0, ring: 0,
 *   tensors: [{ name: "w", length: 1, buffers: { expAvg: new Uint8Array(4), expAvgSq: new Uint8Array(4) } }] };
 * assertStateMatches(state, { optimizer: "Adam", config: { amsgrad: false }, tensors: [{ length: 1, buffers: { expAvg: 4, expAvgSq: 4 } }] });
 * ```
 */
export function assertStateMatches(
  state: OptimizerState,
  expected: ExpectedState,
): void {
  if (typeof state !== "object" || state === null) {
    throw new CheckpointError(
      `expected an optimizer state object, got ${describe(state)}`,
    );
  }
  if (typeof state.config !== "object" || state.config === null) {
    throw new CheckpointError(
      `malformed optimizer state: "config" must be an object, got ${
        describe(state.config)
      }`,
    );
  }
  if (!Array.isArray(state.tensors)) {
    throw new CheckpointError(
      `malformed optimizer state: "tensors" must be an array, got ${
        describe(state.tensors)
      }`,
    );
  }
  checkShape(state, expected);
  if (state.calls < state.step + state.skipped) {
    throw new CheckpointError(
      `calls (${state.calls}) is less than step (${state.step}) + skipped (${state.skipped})`,
    );
  }
}

function checkShape(
  state: OptimizerState,
  expected: ExpectedState,
): void {
  if (state.optimizer !== expected.optimizer) {
    throw new CheckpointError(
      `optimizer mismatch: this is ${expected.optimizer}, the state was saved by ${state.optimizer}`,
    );
  }
  const keys = new Set([
    ...Object.keys(expected.config),
    ...Object.keys(state.config),
  ]);
  for (const k of keys) {
    if (state.config[k] !== expected.config[k]) {
      throw new CheckpointError(
        `config mismatch on "${k}": this optimizer has ${
          describe(expected.config[k])
        }, the state has ${describe(state.config[k])}`,
      );
    }
  }
  for (
    const [k, v] of Object.entries({
      step: state.step,
      calls: state.calls,
      skipped: state.skipped,
      ring: state.ring,
    })
  ) {
    if (!Number.isInteger(v) || v < 0) {
      throw new CheckpointError(
        `${k}: expected an integer >= 0, got ${describe(v)}`,
      );
    }
  }
  if (state.tensors.length !== expected.tensors.length) {
    throw new CheckpointError(
      `tensor count mismatch: this optimizer has ${expected.tensors.length} tensors, the state has ${state.tensors.length}`,
    );
  }
  expected.tensors.forEach((e, i) => {
    const s = state.tensors[i];
    if (
      typeof s !== "object" || s === null || typeof s.buffers !== "object" ||
      s.buffers === null
    ) {
      throw new CheckpointError(
        `tensor ${i}: expected { name, length, buffers }, got ${describe(s)}`,
      );
    }
    if (s.length !== e.length) {
      throw new CheckpointError(
        `tensor ${i} ("${s.name}"): expected ${e.length} elements, the state has ${s.length}`,
      );
    }
    for (const name of Object.keys(s.buffers)) {
      if (!(name in e.buffers)) {
        throw new CheckpointError(
          `tensor ${i} ("${s.name}"): unexpected state buffer "${name}" (expected ${
            Object.keys(e.buffers).join(", ")
          })`,
        );
      }
    }
    for (const [name, bytes] of Object.entries(e.buffers)) {
      const got = s.buffers[name];
      if (got === undefined) {
        throw new CheckpointError(
          `tensor ${i} ("${s.name}"): state buffer "${name}" is missing`,
        );
      }
      if (!ArrayBuffer.isView(got)) {
        throw new CheckpointError(
          `tensor ${i} ("${s.name}"): buffer "${name}" is not bytes, got ${
            describe(got)
          }`,
        );
      }
      if (got.byteLength !== bytes) {
        throw new CheckpointError(
          `tensor ${i} ("${s.name}"): buffer "${name}" should be ${bytes} bytes, the state has ${got.byteLength}`,
        );
      }
    }
  });
}
