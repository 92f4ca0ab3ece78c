/**
 * Everything the convergence notebooks (`notebooks/`) use, in one import:
 * objectives and oracles, the optimizer registry, the runner, grids,
 * statistics, the compression meter, the GPU runners, plots and reports.
 * The same code runs under `deno run`.
 *
 * @module
 */

export * from "./objectives.ts";
export * from "./linalg.ts";
export * from "./optimizers.ts";
export * from "./runner.ts";
export * from "./grid.ts";
export * from "./stats.ts";
export * from "./compression.ts";
export * from "./gpu.ts";
export * from "./plots.ts";
export * from "./report.ts";
export { normal, rng, studentT } from "../numeric/rng.ts";
export { requestDevice } from "../gpu/device.ts";
