/** src/checkpoint/validate.ts: a state fits its optimizer, or the first difference is named. */

import assert from "node:assert/strict";
import { CheckpointError } from "../src/errors.ts";
import type { OptimizerState } from "../src/core/state.ts";
import {
  decodeCheckpoint,
  encodeCheckpoint,
} from "../src/checkpoint/format.ts";
import { type ExpectedState, matchState } from "../src/checkpoint/validate.ts";
import { sampleState, throwsCheckpoint } from "./checkpoint_states.ts";

function expectedFor(state: OptimizerState): ExpectedState {
  return {
    optimizer: state.optimizer,
    config: { ...state.config },
    tensors: state.tensors.map((t) => ({
      name: t.name,
      named: true,
      length: t.length,
      buffers: Object.fromEntries(
        Object.entries(t.buffers).map(([k, v]) => [k, v.byteLength]),
      ),
    })),
  };
}

Deno.test("matchState accepts a decoded state and names each mismatch", () => {
  const state = decodeCheckpoint(encodeCheckpoint(sampleState()));
  matchState(state, expectedFor(sampleState()));

  const cases: [string, (e: ExpectedState) => void, RegExp][] = [
    [
      "optimizer",
      (e) => (e.optimizer = "AdamW"),
      /optimizer mismatch.*AdamW.*MicroAdam/,
    ],
    [
      "config value",
      (e) => (e.config.window = 20),
      /config mismatch on "window"/,
    ],
    [
      "config key added",
      (e) => (e.config.extra = 1),
      /config mismatch on "extra"/,
    ],
    [
      "config key missing",
      (e) => delete e.config.dtype,
      /config mismatch on "dtype"/,
    ],
    [
      "tensor count",
      (e) => e.tensors.pop(),
      /tensor count mismatch.*2 tensors.*3/,
    ],
    [
      "tensor name",
      (e) => (e.tensors[1].name = "bias2"),
      /tensor name mismatch: tensor 1 "bias2" is not in the state \(this optimizer has \["layer.0.weight", "bias2", "ünïcode"\], the state has \["layer.0.weight", "bias", "ünïcode"\]\)/,
    ],
    [
      "length",
      (e) => (e.tensors[2].length = 6),
      /tensor 2 "ünïcode" has 6 elements, the state's tensor "ünïcode" has 5/,
    ],
    [
      "buffer size",
      (e) => (e.tensors[0].buffers.window = 14),
      /buffer "window" should be 14 bytes, the state's tensor "layer.0.weight" has 13/,
    ],
    [
      "missing buffer",
      (e) => (e.tensors[1].buffers.m = 0),
      /tensor 1 "bias": state buffer "m" is missing from the state's tensor "bias"/,
    ],
  ];
  for (const [what, edit, pattern] of cases) {
    const e = expectedFor(sampleState());
    edit(e);
    assert.throws(() => matchState(state, e), (err: unknown) => {
      assert.ok(err instanceof CheckpointError, `${what}: ${err}`);
      assert.match(err.message, pattern, what);
      return true;
    });
  }
  const negative = { ...state, step: -1 };
  throwsCheckpoint(
    () => matchState(negative, expectedFor(sampleState())),
    /step: expected an integer >= 0/,
  );
});
