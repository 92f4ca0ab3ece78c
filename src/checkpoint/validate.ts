/**
 * Checks that an {@link OptimizerState} fits the optimizer it is loaded into,
 * names the first difference when it does not, and returns the state in the
 * receiving optimizer's tensor order with every buffer as plain bytes, so
 * that the load that follows cannot fail half way.
 *
 * @module
 */

import { CheckpointError, describe } from "../errors.ts";
import type {
  ConfigValue,
  OptimizerState,
  TensorState,
} from "../core/state.ts";

/** One tensor of the receiving optimizer. */
export interface ExpectedTensor {
  /** Its name (its index as a string when it was given none). */
  name: string;
  /** Whether the name was given by the user: then it is matched by name. */
  named?: boolean;
  /** Element count. */
  length: number;
  /** Byte size of every state buffer. */
  buffers: Record<string, number>;
}

/** What the receiving optimizer expects. */
export interface ExpectedState {
  /** Optimizer kind. */
  optimizer: string;
  /** State-shaping configuration; every key must match exactly. */
  config: Record<string, ConfigValue>;
  /** The tensors, in the optimizer's order. */
  tensors: ExpectedTensor[];
  /** Largest step, calls and skipped count the optimizer can hold. @default {Number.MAX_SAFE_INTEGER} */
  maxCounter?: number;
}

/**
 * Throws {@link CheckpointError} unless `state` matches `expected`; returns
 * the state with its tensors in `expected`'s order (named tensors are found
 * by name, unnamed ones by position) and every buffer a `Uint8Array` over
 * the same bytes.
 *
 * @example
 * ```ts
 * import { matchState } from "./validate.ts";
 * const state = { optimizer: "Adam", config: { amsgrad: false }, step: 1, calls: 1, skipped: 0, ring: 0,
 *   tensors: [
 *     { name: "a", length: 1, buffers: { expAvg: new Uint8Array(4), expAvgSq: new Uint8Array(4) } },
 *     { name: "b", length: 2, buffers: { expAvg: new Uint8Array(8), expAvgSq: new Uint8Array(8) } },
 *   ] };
 * const matched = matchState(state, { optimizer: "Adam", config: { amsgrad: false }, tensors: [
 *   { name: "b", named: true, length: 2, buffers: { expAvg: 8, expAvgSq: 8 } },
 *   { name: "a", named: true, length: 1, buffers: { expAvg: 4, expAvgSq: 4 } },
 * ] });
 * console.log(matched.tensors.map((t) => t.name)); // [ "b", "a" ]
 * ```
 */
export function matchState(
  state: OptimizerState,
  expected: ExpectedState,
): OptimizerState {
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
  if (state.optimizer !== expected.optimizer) {
    throw new CheckpointError(
      `optimizer mismatch: this is ${expected.optimizer}, the state was saved by ${
        typeof state.optimizer === "string"
          ? state.optimizer
          : describe(state.optimizer)
      }`,
    );
  }
  checkConfig(state.config, expected.config);
  checkCounters(state, expected.maxCounter ?? Number.MAX_SAFE_INTEGER);
  const order = matchTensors(state.tensors, expected.tensors);
  const tensors = expected.tensors.map((e, i) =>
    checkTensor(state.tensors[order[i]], e, i)
  );
  return { ...state, config: { ...state.config }, tensors };
}

function checkConfig(
  got: Record<string, ConfigValue>,
  want: Record<string, ConfigValue>,
): void {
  for (const k of new Set([...Object.keys(want), ...Object.keys(got)])) {
    if (got[k] !== want[k]) {
      throw new CheckpointError(
        `config mismatch on "${k}": this optimizer has ${
          describe(want[k])
        }, the state has ${describe(got[k])}`,
      );
    }
  }
}

function checkCounters(state: OptimizerState, max: number): void {
  for (const k of ["step", "calls", "skipped", "ring"] as const) {
    const v = state[k];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
      throw new CheckpointError(
        `${k}: expected an integer >= 0, got ${describe(v)}`,
      );
    }
    if (k !== "ring" && v > max) {
      throw new CheckpointError(
        `${k}: this optimizer counts up to ${max}, the state has ${v}`,
      );
    }
  }
  if (state.calls < state.step + state.skipped) {
    throw new CheckpointError(
      `calls (${state.calls}) is less than step (${state.step}) + skipped (${state.skipped})`,
    );
  }
}

const nameList = (names: readonly string[]) =>
  `[${names.map((n) => JSON.stringify(n)).join(", ")}]`;

/** For each expected tensor, the index of its state tensor. */
function matchTensors(
  got: readonly TensorState[],
  want: readonly ExpectedTensor[],
): number[] {
  const gotNames = got.map((t) =>
    typeof t === "object" && t !== null && typeof t.name === "string"
      ? t.name
      : "?"
  );
  const both = () =>
    `this optimizer has ${nameList(want.map((t) => t.name))}, the state has ${
      nameList(gotNames)
    }`;
  if (got.length !== want.length) {
    throw new CheckpointError(
      `tensor count mismatch: this optimizer has ${want.length} tensors, the state has ${got.length} (${both()})`,
    );
  }
  const byName = new Map<string, number>();
  gotNames.forEach((n, i) => {
    if (!byName.has(n)) byName.set(n, i);
  });
  const used = new Set<number>();
  return want.map((e, i) => {
    const j = e.named ? byName.get(e.name) : i;
    if (j === undefined) {
      throw new CheckpointError(
        `tensor name mismatch: tensor ${i} "${e.name}" is not in the state (${both()})`,
      );
    }
    if (used.has(j)) {
      throw new CheckpointError(
        `tensor name mismatch: state tensor ${j} "${
          gotNames[j]
        }" would load into two tensors (${both()})`,
      );
    }
    used.add(j);
    return j;
  });
}

function checkTensor(
  s: TensorState,
  e: ExpectedTensor,
  i: number,
): TensorState {
  const label = `tensor ${i} "${e.name}"`;
  if (
    typeof s !== "object" || s === null || typeof s.buffers !== "object" ||
    s.buffers === null
  ) {
    throw new CheckpointError(
      `${label}: expected { name, length, buffers } in the state, got ${
        describe(s)
      }`,
    );
  }
  const theirs = `the state's tensor "${s.name}"`;
  if (s.length !== e.length) {
    throw new CheckpointError(
      `${label} has ${e.length} elements, ${theirs} has ${describe(s.length)}`,
    );
  }
  for (const name of Object.keys(s.buffers)) {
    if (!Object.hasOwn(e.buffers, name)) {
      throw new CheckpointError(
        `${label}: ${theirs} has an unexpected state buffer "${name}" (expected ${
          Object.keys(e.buffers).join(", ")
        })`,
      );
    }
  }
  const buffers: Record<string, Uint8Array> = {};
  for (const [name, bytes] of Object.entries(e.buffers)) {
    const got: unknown = s.buffers[name];
    if (got === undefined) {
      throw new CheckpointError(
        `${label}: state buffer "${name}" is missing from ${theirs}`,
      );
    }
    if (!ArrayBuffer.isView(got)) {
      throw new CheckpointError(
        `${label}: state buffer "${name}" of ${theirs} is not bytes, got ${
          describe(got)
        }`,
      );
    }
    if (got.byteLength !== bytes) {
      throw new CheckpointError(
        `${label}: state buffer "${name}" should be ${bytes} bytes, ${theirs} has ${got.byteLength}`,
      );
    }
    buffers[name] = new Uint8Array(got.buffer, got.byteOffset, got.byteLength);
  }
  return { name: s.name, length: s.length, buffers };
}
