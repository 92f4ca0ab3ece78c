/**
 * src/core/options.ts: every default, every invalid option rejected with an
 * InvalidOptionError that names the option and the bad value, and the
 * boundary values accepted.
 */

import assert from "node:assert/strict";
import { InvalidOptionError } from "../src/errors.ts";
import {
  checkLr,
  checkWeightDecay,
  resolveAdamOptions,
  resolveMicroAdamOptions,
} from "../src/core/options.ts";
import { MAX_TOPK_BLOCK } from "../src/core/limits.ts";

/** Asserts `f` throws an InvalidOptionError whose message matches every pattern. */
function rejects(f: () => unknown, ...patterns: (RegExp | string)[]): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof InvalidOptionError, `got ${e}`);
    assert.ok(e instanceof RangeError);
    assert.equal(e.name, "InvalidOptionError");
    for (const p of patterns) {
      if (typeof p === "string") {
        assert.ok(e.message.includes(p), `"${e.message}" lacks "${p}"`);
      } else assert.match(e.message, p);
    }
    return true;
  });
}

Deno.test("resolveAdamOptions: defaults", () => {
  assert.deepEqual(resolveAdamOptions(), {
    lr: 1e-3,
    betas: [0.9, 0.999],
    eps: 1e-8,
    weightDecay: 0,
    nonFinite: "skip",
    schedule: undefined,
    amsgrad: false,
    decoupledWeightDecay: false,
  });
  assert.deepEqual(resolveAdamOptions({}), resolveAdamOptions());
  // Per-optimizer defaults (AdamW) apply only when the option is absent.
  const w = resolveAdamOptions({}, {
    weightDecay: 0.01,
    decoupledWeightDecay: true,
  });
  assert.equal(w.weightDecay, 0.01);
  assert.equal(w.decoupledWeightDecay, true);
  const w0 = resolveAdamOptions(
    { weightDecay: 0, decoupledWeightDecay: false },
    {
      weightDecay: 0.01,
      decoupledWeightDecay: true,
    },
  );
  assert.equal(w0.weightDecay, 0);
  assert.equal(w0.decoupledWeightDecay, false);
});

Deno.test("resolveMicroAdamOptions: defaults (the authors' m = 10, 1 % density, D = Q = 4096, f32)", () => {
  assert.deepEqual(resolveMicroAdamOptions(), {
    lr: 1e-3,
    betas: [0.9, 0.999],
    eps: 1e-8,
    weightDecay: 0,
    nonFinite: "skip",
    schedule: undefined,
    window: 10,
    density: 0.01,
    topkBlockSize: 4096,
    efBlockSize: 4096,
    dtype: "f32",
  });
  assert.equal(MAX_TOPK_BLOCK, 65536);
});

Deno.test("resolve*: given values pass through, betas copied", () => {
  const betas = [0.5, 0.75] as const;
  const s = (t: number) => 1 / t;
  const o = resolveMicroAdamOptions({
    lr: 0.5,
    betas,
    eps: 1e-6,
    weightDecay: 0.1,
    nonFinite: "error",
    schedule: s,
    window: 3,
    density: 0.25,
    topkBlockSize: 128,
    efBlockSize: 64,
    dtype: "bf16",
  });
  assert.deepEqual(o, {
    lr: 0.5,
    betas: [0.5, 0.75],
    eps: 1e-6,
    weightDecay: 0.1,
    nonFinite: "error",
    schedule: s,
    window: 3,
    density: 0.25,
    topkBlockSize: 128,
    efBlockSize: 64,
    dtype: "bf16",
  });
  assert.notEqual(o.betas, betas);
  const a = resolveAdamOptions({ amsgrad: true, decoupledWeightDecay: true });
  assert.equal(a.amsgrad, true);
  assert.equal(a.decoupledWeightDecay, true);
});

Deno.test("common options: each invalid value is an InvalidOptionError naming the option and the value", () => {
  const common: [string, unknown, string][] = [
    ["lr", -1, "lr: expected a finite number >= 0, got -1"],
    ["lr", NaN, "got NaN"],
    ["lr", Infinity, "got Infinity"],
    ["lr", "0.1", 'got "0.1"'],
    ["betas", [1, 0.9], "betas: expected two numbers in [0, 1), got [1,0.9]"],
    ["betas", [0.9, 1], "got [0.9,1]"],
    ["betas", [-0.1, 0.9], "got [-0.1,0.9]"],
    ["betas", [0.9], "got [0.9]"],
    ["betas", [0.9, 0.99, 0.5], "got [0.9,0.99,0.5]"],
    ["betas", [NaN, 0.9], "betas"],
    ["betas", ["0.9", 0.9], 'got ["0.9",0.9]'],
    ["betas", 0.9, "got 0.9"],
    ["eps", -1e-8, "eps: expected a finite number > 0, got -1e-8"],
    ["eps", NaN, "eps"],
    ["eps", Infinity, "got Infinity"],
    ["eps", "1e-8", 'got "1e-8"'],
    [
      "weightDecay",
      -0.01,
      "weightDecay: expected a finite number >= 0, got -0.01",
    ],
    ["weightDecay", Infinity, "got Infinity"],
    ["weightDecay", NaN, "got NaN"],
    ["nonFinite", "ignore", 'got "ignore"'],
    ["nonFinite", true, "got true"],
    ["schedule", 5, "schedule: expected a function (step) => factor, got 5"],
    ["schedule", "cosine", 'got "cosine"'],
  ];
  for (const [key, value, message] of common) {
    rejects(() => resolveAdamOptions({ [key]: value }), message, key);
    rejects(() => resolveMicroAdamOptions({ [key]: value }), message, key);
  }
});

Deno.test('nonFinite: "unchecked" is the Adam family\'s only; each resolver names the policies it takes', () => {
  assert.equal(
    resolveAdamOptions({ nonFinite: "unchecked" }).nonFinite,
    "unchecked",
  );
  for (const p of ["skip", "error"] as const) {
    assert.equal(resolveAdamOptions({ nonFinite: p }).nonFinite, p);
    assert.equal(resolveMicroAdamOptions({ nonFinite: p }).nonFinite, p);
  }
  rejects(
    () => resolveAdamOptions({ nonFinite: "ignore" as "skip" }),
    /^nonFinite: expected "skip", "error" or "unchecked", got "ignore"$/,
  );
  rejects(
    () => resolveMicroAdamOptions({ nonFinite: "ignore" as "skip" }),
    /^nonFinite: expected "skip" or "error", got "ignore"$/,
  );
  // Policies are case-sensitive strings.
  rejects(
    () => resolveAdamOptions({ nonFinite: "Unchecked" as "skip" }),
    'got "Unchecked"',
  );
  rejects(
    () => resolveMicroAdamOptions({ nonFinite: "unchecked" as "skip" }),
    /^nonFinite: MicroAdam checks gradients inside its first kernel at no extra cost; expected "skip" or "error", got "unchecked"$/,
  );
});

Deno.test("MicroAdam options: each invalid value is an InvalidOptionError naming the option and the value", () => {
  const bad: [string, unknown, string][] = [
    ["window", 0, "window (m): expected an integer in [1, 65535], got 0"],
    ["window", 65536, "got 65536"],
    ["window", 2.5, "got 2.5"],
    ["window", -1, "got -1"],
    ["window", "10", 'got "10"'],
    ["density", 0, "density: expected a number in (0, 1], got 0"],
    ["density", 1.0001, "got 1.0001"],
    ["density", -0.5, "got -0.5"],
    ["density", NaN, "got NaN"],
    ["density", "0.01", 'got "0.01"'],
    [
      "topkBlockSize",
      0,
      "topkBlockSize (D): expected an integer in [1, 65536] (indices are u16), got 0",
    ],
    ["topkBlockSize", 65537, "got 65537"],
    ["topkBlockSize", 100.5, "got 100.5"],
    ["topkBlockSize", Infinity, "got Infinity"],
    [
      "efBlockSize",
      0,
      "efBlockSize (Q): expected an even integer in [2, 2147483648], got 0",
    ],
    ["efBlockSize", 1, "got 1"],
    ["efBlockSize", 3, "got 3"],
    ["efBlockSize", 4097, "got 4097"],
    ["efBlockSize", 2.5, "got 2.5"],
    ["efBlockSize", -2, "got -2"],
    ["dtype", "f16", 'dtype: expected "f32" or "bf16", got "f16"'],
    ["dtype", 4, "got 4"],
  ];
  for (const [key, value, message] of bad) {
    rejects(() => resolveMicroAdamOptions({ [key]: value }), message);
  }
});

Deno.test("boundary values are accepted: density 1, betas [0, 0], topkBlockSize 1 and 65536, window 1 and 65535, efBlockSize 2, zeros", () => {
  const o = resolveMicroAdamOptions({
    density: 1,
    betas: [0, 0],
    topkBlockSize: 65536,
    window: 1,
    efBlockSize: 2,
    lr: 0,
    eps: 2 ** -126,
    weightDecay: 0,
  });
  assert.deepEqual(
    [o.density, o.betas, o.topkBlockSize, o.window, o.efBlockSize, o.lr, o.eps],
    [1, [0, 0], 65536, 1, 2, 0, 2 ** -126],
  );
  assert.equal(
    resolveMicroAdamOptions({ efBlockSize: 2 ** 31 }).efBlockSize,
    2 ** 31,
  );
  assert.equal(resolveMicroAdamOptions({ topkBlockSize: 1 }).topkBlockSize, 1);
  assert.equal(resolveMicroAdamOptions({ window: 65535 }).window, 65535);
  assert.equal(resolveMicroAdamOptions({ density: 1e-9 }).density, 1e-9);
  const b = resolveAdamOptions({ betas: [0.9999999, 0] });
  assert.deepEqual(b.betas, [0.9999999, 0]);
  assert.equal(resolveAdamOptions({ lr: 1e30 }).lr, 1e30);
});

Deno.test("checkLr / checkWeightDecay: return the value, name the given place in errors", () => {
  assert.equal(checkLr(0), 0);
  assert.equal(checkLr(0.25), 0.25);
  assert.equal(checkWeightDecay(0.01), 0.01);
  rejects(() => checkLr(-0.5), "lr: expected a finite number >= 0, got -0.5");
  rejects(
    () => checkLr(NaN, "group 3 lr"),
    "group 3 lr: expected a finite number >= 0, got NaN",
  );
  rejects(() => checkLr(undefined), "got undefined");
  rejects(() => checkLr(null), "got null");
  rejects(
    () => checkWeightDecay(-1),
    "weightDecay: expected a finite number >= 0, got -1",
  );
  rejects(
    () => checkWeightDecay(Infinity, "group 0 weightDecay"),
    "group 0 weightDecay",
    "Infinity",
  );
});

Deno.test("values are checked as the kernels see them (f32): overflow, a β that rounds to 1, ε that vanishes are InvalidOptionErrors", () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ lr: 1e39 }, "lr: 1e+39 overflows f32"],
    [{ lr: 3.5e38 }, "lr: 3.5e+38 overflows f32"],
    [{ weightDecay: 1e39 }, "weightDecay: 1e+39 overflows f32"],
    [{ betas: [0.9, 0.999999999] }, "betas[1]: 0.999999999 rounds to 1 in f32"],
    [{ betas: [0.99999999, 0.999] }, "betas[0]: 0.99999999 rounds to 1 in f32"],
    [{ eps: 0 }, "eps: expected a finite number > 0, got 0"],
    [{ eps: 1e-45 }, "eps: 1e-45 is below the smallest normal f32"],
    [{ eps: 1e39 }, "eps: 1e+39 overflows f32"],
  ];
  for (const [o, message] of cases) {
    rejects(() => resolveAdamOptions(o), message);
    rejects(() => resolveMicroAdamOptions(o), message);
  }
  // Just inside: the largest f32, a β just under 1 in f32.
  assert.equal(resolveAdamOptions({ lr: 3.4e38 }).lr, 3.4e38);
  assert.equal(
    resolveAdamOptions({ betas: [0.9, 1 - 2 ** -24] }).betas[1],
    1 - 2 ** -24,
  );
});

Deno.test("integer options are bounded by what the kernels hold: efBlockSize 2^32 is an InvalidOptionError", () => {
  for (const q of [2 ** 32, 2 ** 31 + 2, 2 ** 53]) {
    rejects(
      () => resolveMicroAdamOptions({ efBlockSize: q }),
      `efBlockSize (Q): expected an even integer in [2, 2147483648], got ${q}`,
    );
  }
});

Deno.test("unknown keys, null, non-object options and non-boolean flags are InvalidOptionErrors naming the key", () => {
  rejects(
    () => resolveAdamOptions({ weight_decay: 0.1 } as never),
    'Adam options: unknown option "weight_decay" (did you mean "weightDecay"?)',
  );
  rejects(
    () => resolveMicroAdamOptions({ lR: 0.1 } as never),
    'MicroAdam options: unknown option "lR" (did you mean "lr"?)',
  );
  rejects(
    () => resolveMicroAdamOptions({ amsgrad: true } as never),
    'unknown option "amsgrad"',
  );
  rejects(
    () => resolveAdamOptions({ dtype: "bf16" } as never),
    'unknown option "dtype"',
  );
  rejects(
    () => resolveAdamOptions({ zzzz: 1 } as never),
    'unknown option "zzzz"; valid options: lr, betas',
  );
  for (const key of ["lr", "betas", "eps", "weightDecay", "nonFinite"]) {
    rejects(
      () => resolveAdamOptions({ [key]: null } as never),
      `${key}: got null; leave the option out for its default`,
    );
  }
  rejects(
    () => resolveMicroAdamOptions({ window: null } as never),
    "window: got null",
  );
  for (const bad of [null, 5, "fast", [1, 2], new Float32Array(2)]) {
    rejects(
      () => resolveAdamOptions(bad as never),
      "Adam options: expected an options object",
    );
  }
  rejects(
    () => resolveAdamOptions({ amsgrad: "false" } as never),
    'amsgrad: expected true or false, got "false"',
  );
  rejects(
    () => resolveAdamOptions({ decoupledWeightDecay: 1 } as never),
    "decoupledWeightDecay: expected true or false, got 1",
  );
});
