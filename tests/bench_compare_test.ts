/**
 * bench/compare.ts: ratios to each group's reference bench, the regression
 * verdicts against a baseline with its recorded noise, and the medians over
 * the runs that confirm a flagged one.
 */

import assert from "node:assert/strict";
import {
  benchEnv,
  benchReport,
  compare,
  medianRatios,
  MIN_TOLERANCE,
  ratios,
} from "../bench/compare.ts";

const json = {
  runtime: "Deno",
  cpu: "test",
  benches: [
    {
      group: "gpu",
      name: "Adam",
      baseline: true,
      results: [{ ok: { min: 2e6 } }],
    },
    {
      group: "gpu",
      name: "MicroAdam",
      baseline: false,
      results: [{ ok: { min: 9e6 } }],
    },
    {
      group: "cpu",
      name: "AdamCpu",
      baseline: true,
      results: [{ ok: { min: 4e5 } }],
    },
    { group: "cpu", name: "Broken", baseline: false, results: [{}] },
  ],
};

Deno.test("ratios: each bench over its group's reference, failed benches left out", () => {
  assert.deepEqual(ratios(json), {
    gpu: { Adam: 1, MicroAdam: 4.5 },
    cpu: { AdamCpu: 1 },
  });
});

Deno.test("compare: flags only changes beyond max(MIN_TOLERANCE, 3 × recorded spread)", () => {
  const base = {
    recorded: "2026-12-01",
    machine: "test",
    groups: {
      gpu: {
        Adam: { ratio: 1, spread: 0 },
        MicroAdam: { ratio: 3, spread: 0.1 }, // tolerance 30 %
        Noisy: { ratio: 2, spread: 0.01 }, // tolerance MIN_TOLERANCE
      },
    },
  };
  const rows = compare(
    {
      gpu: {
        Adam: 1,
        MicroAdam: 4.5,
        Noisy: 2 * (1 + MIN_TOLERANCE / 2),
        Fresh: 7,
      },
    },
    base,
  );
  const verdict = Object.fromEntries(rows.map((r) => [r.name, r.verdict]));
  assert.deepEqual(verdict, {
    Adam: "ok",
    MicroAdam: "regression", // +50 % > 30 %
    Noisy: "ok",
    Fresh: "new",
  });
  const micro = rows.find((r) => r.name === "MicroAdam")!;
  assert.ok(Math.abs(micro.change! - 0.5) < 1e-12);
  assert.ok(Math.abs(micro.tolerance! - 0.3) < 1e-12);
  const faster = compare({ gpu: { MicroAdam: 1.5 } }, base)[0];
  assert.equal(faster.verdict, "faster");
});

Deno.test("medianRatios: the middle run per bench (mean of the middle two for an even count), a one-run outlier outvoted", () => {
  const runs: Record<string, Record<string, number>>[] = [
    { gpu: { Adam: 1, MicroAdam: 5.48 }, cpu: { AdamCpu: 1 } },
    { gpu: { Adam: 1, MicroAdam: 4.17 }, cpu: { AdamCpu: 1 } },
    { gpu: { Adam: 1, MicroAdam: 3.52 } },
  ];
  assert.deepEqual(medianRatios(runs), {
    gpu: { Adam: 1, MicroAdam: 4.17 },
    cpu: { AdamCpu: 1 },
  });
  assert.equal(medianRatios(runs.slice(1)).gpu.MicroAdam, (4.17 + 3.52) / 2);
  // The flagged run (+42 % against 3.866) is a regression alone; its
  // median with two more is not.
  const base = {
    recorded: "",
    machine: "",
    groups: { gpu: { MicroAdam: { ratio: 3.866, spread: 0.02 } } },
  };
  assert.equal(compare(runs[0], base)[1].verdict, "regression");
  assert.equal(compare(medianRatios(runs), base)[1].verdict, "ok");
});

Deno.test("benchReport: a failed exit counts only after a whole report with every bench's result", () => {
  const whole = JSON.stringify(json);
  assert.deepEqual(benchReport(true, whole), { json, aborted: false });
  const ok = { ...json, benches: json.benches.slice(0, 3) };
  assert.deepEqual(benchReport(false, JSON.stringify(ok)), {
    json: ok,
    aborted: true,
  });
  // A bench without a result (it failed), a cut report, no output at all.
  assert.throws(() => benchReport(false, whole), /deno bench failed: Broken/);
  assert.throws(
    () => benchReport(false, whole.slice(0, 100)),
    /exited before its report/,
  );
  assert.throws(() => benchReport(true, ""), /its output is not JSON/);
});

Deno.test("benchEnv: llvmpipe on one thread unless the caller chose", () => {
  assert.deepEqual(benchEnv({ HOME: "/h" }), {
    HOME: "/h",
    LP_NUM_THREADS: "1",
  });
  assert.deepEqual(benchEnv({ LP_NUM_THREADS: "8" }), { LP_NUM_THREADS: "8" });
});
