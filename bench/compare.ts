/**
 * `deno task bench`: runs `deno bench -A bench/` (bench/optimizers_bench.ts)
 * and compares each bench, relative to its group's reference (AdamCpu for
 * the CPU group, Adam for the WebGPU group), with the committed baseline
 * (bench/baseline.json). Ratios rather than times, so that a run on another
 * machine, or on llvmpipe beside another job, still compares. A ratio that
 * grew beyond the noise recorded with the baseline is flagged as a
 * regression and the command exits with status 1. A run that flags one is
 * repeated (`--confirm`, 2 more runs by default) and each bench's median
 * ratio over the runs decides: one slow run on a shared machine (seen on a
 * 2-core machine: +42 % in one run, within the noise in the runs after it)
 * is not a regression.
 *
 * `deno bench` runs with `LP_NUM_THREADS=1` unless the environment sets it:
 * llvmpipe (Mesa's CPU Vulkan driver) then runs each dispatch on one thread
 * instead of racing the host's threads for a small machine's cores. On a
 * 2-vCPU VM that took the run-to-run range of the MicroAdam / Adam ratio from
 * ±8 % to ±2 % (bench/RESULTS.md, round 36). Other drivers ignore it.
 *
 *   deno run -A bench/compare.ts              # run and compare
 *   deno run -A bench/compare.ts --confirm 0  # one run decides
 *   deno run -A bench/compare.ts --update     # record a new baseline (5 runs)
 *
 * @module
 */

import { parseArgs } from "node:util";

/** One bench's ratio to its group's reference, and its recorded noise. */
export interface BaselineEntry {
  /** Bench time over the group reference's (both `min` of `deno bench`). */
  ratio: number;
  /** Relative spread of the ratio between the recorded runs. */
  spread: number;
}

/** The committed baseline. */
export interface Baseline {
  /** When and where it was recorded. */
  recorded: string;
  /** `deno bench`'s runtime and CPU strings. */
  machine: string;
  /** Group name → bench name → entry. */
  groups: Record<string, Record<string, BaselineEntry>>;
}

/** Smallest tolerance: ratios that move less than this are never flagged. */
export const MIN_TOLERANCE = 0.1;

interface BenchJson {
  runtime: string;
  cpu: string;
  benches: {
    group: string | null;
    name: string;
    baseline: boolean;
    results: { ok?: { min: number } }[];
  }[];
}

/** Ratios to the group reference, by group and bench name. */
export function ratios(
  json: BenchJson,
): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  const groups = new Set(json.benches.map((b) => b.group ?? ""));
  for (const g of groups) {
    const list = json.benches.filter((b) =>
      (b.group ?? "") === g && b.results[0]?.ok
    );
    const ref = list.find((b) => b.baseline);
    if (!ref) continue;
    const refMin = ref.results[0].ok!.min;
    out[g] = Object.fromEntries(
      list.map((b) => [b.name, b.results[0].ok!.min / refMin]),
    );
  }
  return out;
}

/**
 * Each bench's median ratio over several runs (a bench missing from a run
 * counts only where it ran).
 *
 * @example
 * ```ts
 * import { medianRatios } from "./compare.ts";
 * const m = medianRatios([{ gpu: { A: 1, B: 5 } }, { gpu: { A: 1, B: 3 } }, { gpu: { A: 1, B: 3.2 } }]);
 * console.log(m.gpu.B); // 3.2
 * ```
 */
export function medianRatios(
  runs: Record<string, Record<string, number>>[],
): Record<string, Record<string, number>> {
  const seen: Record<string, Record<string, number[]>> = {};
  for (const run of runs) {
    for (const [g, benches] of Object.entries(run)) {
      for (const [name, ratio] of Object.entries(benches)) {
        ((seen[g] ??= {})[name] ??= []).push(ratio);
      }
    }
  }
  const median = (xs: number[]) => {
    const s = xs.toSorted((a, b) => a - b);
    const mid = s.length >> 1;
    return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  };
  return Object.fromEntries(
    Object.entries(seen).map(([g, benches]) => [
      g,
      Object.fromEntries(
        Object.entries(benches).map(([name, xs]) => [name, median(xs)]),
      ),
    ]),
  );
}

/**
 * Compares ratios with a baseline: the tolerance of a bench is the larger
 * of {@link MIN_TOLERANCE} and three times its recorded spread.
 *
 * @example
 * ```ts
 * import { compare } from "./compare.ts";
 * const base = { recorded: "", machine: "", groups: { gpu: { "MicroAdam": { ratio: 10, spread: 0.02 } } } };
 * console.log(compare({ gpu: { "MicroAdam": 13 } }, base)[0].verdict); // "regression"
 * ```
 */
export function compare(
  now: Record<string, Record<string, number>>,
  base: Baseline,
): {
  group: string;
  name: string;
  base?: number;
  now: number;
  change?: number;
  tolerance?: number;
  verdict: "ok" | "regression" | "faster" | "new";
}[] {
  const rows = [];
  for (const [group, benches] of Object.entries(now)) {
    for (const [name, ratio] of Object.entries(benches)) {
      const b = base.groups[group]?.[name];
      if (!b) {
        rows.push({ group, name, now: ratio, verdict: "new" as const });
        continue;
      }
      const tolerance = Math.max(MIN_TOLERANCE, 3 * b.spread);
      const change = ratio / b.ratio - 1;
      rows.push({
        group,
        name,
        base: b.ratio,
        now: ratio,
        change,
        tolerance,
        verdict: change > tolerance
          ? "regression" as const
          : change < -tolerance
          ? "faster" as const
          : "ok" as const,
      });
    }
  }
  return rows;
}

/**
 * `deno bench --json`'s report from its exit and its output. Deno 2.9.6
 * sometimes aborts at exit in a process that used WebGPU on lavapipe, after
 * all its work is done (tests/run_tests.ts says more): a failed exit counts
 * (`aborted: true`) only when the output is a whole report in which every
 * bench that ran has a result.
 *
 * @example
 * ```ts
 * import { benchReport } from "./compare.ts";
 * const out = JSON.stringify({ runtime: "Deno", cpu: "x", benches: [] });
 * console.log(benchReport(false, out).aborted); // true
 * ```
 */
export function benchReport(
  success: boolean,
  stdout: string,
): { json: BenchJson; aborted: boolean } {
  let json: BenchJson;
  try {
    json = JSON.parse(stdout);
  } catch {
    throw new Error(
      `deno bench failed: ${
        success ? "its output is not JSON" : "it exited before its report"
      }`,
    );
  }
  if (!success) {
    if (!Array.isArray(json.benches)) {
      throw new Error("deno bench failed: no benches in its report");
    }
    const failed = json.benches.filter((b) => b.results.some((r) => !r.ok));
    if (failed.length > 0) {
      throw new Error(
        `deno bench failed: ${failed.map((b) => b.name).join(", ")}`,
      );
    }
  }
  return { json, aborted: !success };
}

/**
 * The environment `deno bench` runs in: `env` with `LP_NUM_THREADS` set to
 * `"1"` where `env` does not set it (llvmpipe's dispatches on one thread; see
 * the module's header).
 *
 * @example
 * ```ts
 * import { benchEnv } from "./compare.ts";
 * console.log(benchEnv({}).LP_NUM_THREADS); // "1"
 * console.log(benchEnv({ LP_NUM_THREADS: "4" }).LP_NUM_THREADS); // "4"
 * ```
 */
export function benchEnv(
  env: Record<string, string>,
): Record<string, string> {
  return { ...env, LP_NUM_THREADS: env.LP_NUM_THREADS ?? "1" };
}

async function runBench(): Promise<BenchJson> {
  const here = new URL(".", import.meta.url).pathname;
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["bench", "-A", "--json", here],
    env: benchEnv(Deno.env.toObject()),
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const { json, aborted } = benchReport(
    r.success,
    new TextDecoder().decode(r.stdout),
  );
  if (aborted) {
    console.error(
      `deno bench exited with status ${r.code} after a whole report (Deno's abort at exit after WebGPU, see tests/run_tests.ts): its results are used`,
    );
  }
  return json;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      update: { type: "boolean", default: false },
      runs: { type: "string", default: "5" },
      confirm: { type: "string", default: "2" },
      baseline: {
        type: "string",
        default: new URL("./baseline.json", import.meta.url).pathname,
      },
    },
  });
  if (values.update) {
    const runs: Record<string, Record<string, number>>[] = [];
    let machine = "";
    for (let i = 0; i < Number(values.runs); i++) {
      const json = await runBench();
      machine = `${json.runtime}, ${json.cpu}`;
      runs.push(ratios(json));
    }
    const groups: Baseline["groups"] = {};
    for (const [g, benches] of Object.entries(runs[0])) {
      groups[g] = {};
      for (const name of Object.keys(benches)) {
        const xs = runs.map((r) => r[g]?.[name]).filter((x) => x !== undefined);
        const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
        const spread = (Math.max(...xs) - Math.min(...xs)) / mean;
        groups[g][name] = {
          ratio: Number(mean.toPrecision(4)),
          spread: Number(spread.toFixed(3)),
        };
      }
    }
    const base: Baseline = {
      recorded: new Date().toISOString(),
      machine,
      groups,
    };
    await Deno.writeTextFile(
      values.baseline!,
      JSON.stringify(base, null, 2) + "\n",
    );
    console.log(`baseline written to ${values.baseline} (${runs.length} runs)`);
  } else {
    const base = JSON.parse(
      await Deno.readTextFile(values.baseline!),
    ) as Baseline;
    const confirm = Number(values.confirm);
    if (!Number.isInteger(confirm) || confirm < 0) {
      throw new TypeError(
        `--confirm: expected a whole number of runs (0 or more), got ${
          JSON.stringify(values.confirm)
        }`,
      );
    }
    const runs = [ratios(await runBench())];
    let rows = compare(runs[0], base);
    if (confirm > 0 && rows.some((r) => r.verdict === "regression")) {
      console.log(
        `\na regression in the first run: ${confirm} more run(s), each bench's median decides`,
      );
      for (let i = 0; i < confirm; i++) runs.push(ratios(await runBench()));
      rows = compare(medianRatios(runs), base);
    }
    console.log(
      `\nagainst ${values.baseline} (recorded ${base.recorded} on ${base.machine}); ratios to each group's reference bench` +
        (runs.length > 1 ? `, medians of ${runs.length} runs` : ""),
    );
    console.log(
      "| group | bench | baseline | now | change | tolerance | verdict |",
    );
    console.log("| --- | --- | ---: | ---: | ---: | ---: | --- |");
    for (const r of rows) {
      const pct = (x?: number) =>
        x === undefined ? "—" : `${x >= 0 ? "+" : ""}${(100 * x).toFixed(1)} %`;
      console.log(
        `| ${r.group} | ${r.name} | ${r.base?.toFixed(3) ?? "—"} | ${
          r.now.toFixed(3)
        } | ${pct(r.change)} | ${
          r.tolerance === undefined
            ? "—"
            : `±${(100 * r.tolerance).toFixed(0)} %`
        } | ${r.verdict === "regression" ? "**REGRESSION**" : r.verdict} |`,
      );
    }
    const bad = rows.filter((r) => r.verdict === "regression");
    if (bad.length) {
      console.log(
        `\n${bad.length} regression(s) beyond noise: ${
          bad.map((r) => r.name).join(", ")
        }`,
      );
      Deno.exit(1);
    }
  }
}
