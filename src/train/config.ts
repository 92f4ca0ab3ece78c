/**
 * The training configuration: every key declared once in {@link SCHEMA}
 * with its type, default, check and help text, and the merging of values
 * into it. A key is snake_case in YAML and kebab-case as a flag
 * (`batch_size`, `--batch-size`); `./cli.ts` reads both. An unknown key or a
 * bad value is an `InvalidOptionError` that names it, says where it came
 * from and, for an unknown name, suggests the closest valid one. (No npm
 * imports here, so the trainer runs where only Deno is installed.)
 *
 * @module
 */

import { InvalidOptionError } from "../errors.ts";

/** The optimizers a run can use. */
export const OPTIMIZERS = ["microadam", "adamw", "amsgrad", "adam"] as const;
/** An optimizer name. */
export type OptimizerName = typeof OPTIMIZERS[number];

/** A complete, validated training configuration. */
export interface TrainConfig {
  /** Which optimizer. */
  optimizer: OptimizerName;
  /** Base learning rate. */
  lr: number;
  /** Learning-rate schedule after the warm-up. */
  schedule: "constant" | "cosine";
  /** Linear warm-up steps (0: none). */
  warmup_steps: number;
  /** Weight decay; null takes the optimizer's default (AdamW 0.01, others 0). */
  weight_decay: number | null;
  /** MicroAdam: gradients in the window (m). */
  window: number;
  /** MicroAdam: fraction of each block kept per step. */
  density: number;
  /** MicroAdam: element type of the parameters and gradients it updates. */
  dtype: "f32" | "bf16";
  /** Passes over the training data. */
  epochs: number;
  /** Training samples per step. */
  batch_size: number;
  /** Test samples per evaluation pass. */
  eval_batch_size: number;
  /** Seed of the initial weights and of the data order. */
  seed: number;
  /** Hidden layer widths of the MLP. */
  hidden: number[];
  /** Activation between layers. */
  activation: "relu" | "gelu";
  /** `auto` (Fashion-MNIST where installed, else an error), `synthetic`, or a folder with the IDX files. */
  data: string;
  /** Train on the first N training samples only (0: all). */
  train_subset: number;
  /** Evaluate on the first N test samples only (0: all). */
  test_subset: number;
  /** Steps between progress reports and metric lines. */
  log_every: number;
  /** JSON-lines metrics file, or null for none. */
  metrics: string | null;
  /** Checkpoint file (model + optimizer), or null for none. */
  checkpoint: string | null;
  /** Steps between checkpoints (0: only at the end and on Ctrl-C). */
  checkpoint_every: number;
  /** Show a progress bar (in CI logs, one line every 10 s). */
  progress: boolean;
}

/** A configuration key. */
export type ConfigKey = keyof TrainConfig;

interface KeySpec {
  /** Default value. */
  default: unknown;
  /** Help text. */
  help: string;
  /** Parses a flag's string (YAML values arrive typed). */
  fromString: (s: string) => unknown;
  /** Returns the checked value or a description of what was expected. */
  check: (
    v: unknown,
  ) => { ok: true; value: unknown } | { ok: false; expected: string };
  /** Whether changing it changes the training trajectory (must match on resume). */
  trajectory: boolean;
}

const ok = (value: unknown) => ({ ok: true as const, value });
const no = (expected: string) => ({ ok: false as const, expected });

const num = (s: string) => s.trim() === "" ? NaN : Number(s);

function oneOf<T extends string>(values: readonly T[]) {
  return (v: unknown) =>
    typeof v === "string" && (values as readonly string[]).includes(v)
      ? ok(v)
      : no(`one of ${values.map((x) => `"${x}"`).join(", ")}`);
}

function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (v: unknown) =>
    typeof v === "number" && Number.isInteger(v) && v >= min && v <= max
      ? ok(v)
      : no(
        `an integer ${
          max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`
        }`,
      );
}

const positive = (v: unknown) =>
  typeof v === "number" && Number.isFinite(v) && v > 0
    ? ok(v)
    : no("a finite number > 0");

const pathOrNull = (v: unknown) =>
  v === null || (typeof v === "string" && v !== "")
    ? ok(v)
    : no("a file path, or null for none");

const bool = (v: unknown) =>
  typeof v === "boolean" ? ok(v) : no("true or false");

/** Every key: default, help, parsing and checks. */
export const SCHEMA: Record<ConfigKey, KeySpec> = {
  optimizer: {
    default: "microadam",
    help: `optimizer: ${OPTIMIZERS.join(" | ")}`,
    fromString: (s) => s,
    check: oneOf(OPTIMIZERS),
    trajectory: true,
  },
  lr: {
    default: 0.001,
    help: "base learning rate",
    fromString: num,
    check: positive,
    trajectory: true,
  },
  schedule: {
    default: "cosine",
    help:
      "lr schedule after the warm-up: constant | cosine (to 0 at the last step)",
    fromString: (s) => s,
    check: oneOf(["constant", "cosine"]),
    trajectory: true,
  },
  warmup_steps: {
    default: 0,
    help: "linear lr warm-up steps (0: none)",
    fromString: num,
    check: integer(0),
    trajectory: true,
  },
  weight_decay: {
    default: null,
    help: "weight decay (null: the optimizer's default, AdamW 0.01, others 0)",
    fromString: (s) => s === "null" ? null : num(s),
    check: (v) =>
      v === null || (typeof v === "number" && Number.isFinite(v) && v >= 0)
        ? ok(v)
        : no("a finite number >= 0, or null for the optimizer's default"),
    trajectory: true,
  },
  window: {
    // The comparison's best for this MLP (README "Training"); the optimizer's
    // own default is the paper's 10.
    default: 3,
    help: "MicroAdam: gradients kept in the window (m)",
    fromString: num,
    check: integer(1, 255),
    trajectory: true,
  },
  density: {
    default: 0.01,
    help: "MicroAdam: fraction of each block kept per step",
    fromString: num,
    check: (v) =>
      typeof v === "number" && v > 0 && v <= 1
        ? ok(v)
        : no("a number in (0, 1]"),
    trajectory: true,
  },
  dtype: {
    default: "f32",
    help: "MicroAdam: f32 | bf16 parameters and gradients",
    fromString: (s) => s,
    check: oneOf(["f32", "bf16"]),
    trajectory: true,
  },
  epochs: {
    default: 10,
    help: "passes over the training data",
    fromString: num,
    check: integer(1),
    trajectory: true,
  },
  batch_size: {
    default: 128,
    help: "training samples per step",
    fromString: num,
    check: integer(1, 65536),
    trajectory: true,
  },
  eval_batch_size: {
    default: 1000,
    help: "test samples per evaluation pass",
    fromString: num,
    check: integer(1, 65536),
    trajectory: false,
  },
  seed: {
    default: 1,
    help: "seed of the initial weights and the data order",
    fromString: num,
    check: integer(0, 0xffffffff),
    trajectory: true,
  },
  hidden: {
    default: [256, 128],
    help: "hidden layer widths, e.g. 256,128 (YAML: [256, 128])",
    fromString: (s) => s.trim() === "" ? [] : s.split(",").map(num),
    check: (v) =>
      Array.isArray(v) &&
        v.every((x) => typeof x === "number" && Number.isInteger(x) && x >= 1)
        ? ok([...v])
        : no("a list of positive integers (widths), e.g. [256, 128]"),
    trajectory: true,
  },
  activation: {
    default: "relu",
    help: "activation: relu | gelu",
    fromString: (s) => s,
    check: oneOf(["relu", "gelu"]),
    trajectory: true,
  },
  data: {
    default: "auto",
    help:
      "auto (Fashion-MNIST in /usr/share/datasets/fashion-mnist) | synthetic | a folder with the IDX files",
    fromString: (s) => s,
    check: (v) =>
      typeof v === "string" && v !== ""
        ? ok(v)
        : no('"auto", "synthetic" or a folder'),
    trajectory: true,
  },
  train_subset: {
    default: 0,
    help: "train on the first N samples only (0: all)",
    fromString: num,
    check: integer(0),
    trajectory: true,
  },
  test_subset: {
    default: 0,
    help: "evaluate on the first N test samples only (0: all)",
    fromString: num,
    check: integer(0),
    trajectory: false,
  },
  log_every: {
    default: 50,
    help: "steps between progress reports and metric lines",
    fromString: num,
    check: integer(1, 100000),
    trajectory: false,
  },
  metrics: {
    default: null,
    help: "JSON-lines metrics file (null: none)",
    fromString: (s) => s === "null" ? null : s,
    check: pathOrNull,
    trajectory: false,
  },
  checkpoint: {
    default: null,
    help: "checkpoint file, model and optimizer in one (null: none)",
    fromString: (s) => s === "null" ? null : s,
    check: pathOrNull,
    trajectory: false,
  },
  checkpoint_every: {
    default: 0,
    help: "steps between checkpoints (0: only at the end and on Ctrl-C)",
    fromString: num,
    check: integer(0),
    trajectory: false,
  },
  progress: {
    default: true,
    help: "show a progress bar",
    fromString: (s) => s === "true" ? true : s === "false" ? false : s,
    check: bool,
    trajectory: false,
  },
};

/** Every key, in the schema's order. */
export const CONFIG_KEYS = Object.keys(SCHEMA) as ConfigKey[];

/**
 * The default configuration.
 *
 * @example
 * ```ts
 * import { defaultConfig } from "./config.ts";
 * console.log(defaultConfig().batch_size); // 128
 * ```
 */
export function defaultConfig(): TrainConfig {
  const c: Record<string, unknown> = {};
  for (const k of CONFIG_KEYS) {
    const d = SCHEMA[k].default;
    c[k] = Array.isArray(d) ? [...d] : d;
  }
  return c as unknown as TrainConfig;
}

/** Edit distance (insertions, deletions, substitutions). */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j];
      row[j] = Math.min(
        row[j] + 1,
        row[j - 1] + 1,
        diag + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
      diag = up;
    }
  }
  return row[b.length];
}

/**
 * The closest of `candidates` to `name`, if one is close enough to be a
 * likely typo (edit distance at most a third of its length, or a prefix).
 *
 * @example
 * ```ts
 * import { closest } from "./config.ts";
 * console.log(closest("lerning_rate", ["lr", "learning_rate"]), closest("xyz", ["lr"])); // learning_rate undefined
 * ```
 */
export function closest(
  name: string,
  candidates: readonly string[],
): string | undefined {
  const norm = (s: string) => s.toLowerCase().replaceAll("-", "_");
  const n = norm(name);
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = distance(n, norm(c));
    if (d < bestD) [best, bestD] = [c, d];
  }
  if (best === undefined) return undefined;
  if (bestD <= Math.max(1, Math.floor(norm(best).length / 3))) return best;
  const prefix = candidates.filter((c) =>
    norm(c).startsWith(n) || n.startsWith(norm(c))
  );
  return prefix.length === 1 ? prefix[0] : undefined;
}

/** The flag of a key: `batch_size` → `--batch-size`. */
export const flagOf = (k: string): string => `--${k.replaceAll("_", "-")}`;

/** `" (did you mean X?)"` when a candidate is close to `name`, else `""`. */
export function suggestion(
  name: string,
  candidates: readonly string[],
): string {
  const c = closest(name, candidates);
  return c ? ` (did you mean ${c}?)` : "";
}

/**
 * Checks `value` for `key`; `where` says where it came from, `shown` is
 * what the user wrote (a flag's text).
 *
 * @throws {InvalidOptionError} Naming the key, the place and what was expected.
 */
export function checkValue(
  key: ConfigKey,
  value: unknown,
  where: string,
  shown: unknown = value,
): unknown {
  const r = SCHEMA[key].check(value);
  if (!r.ok) {
    throw new InvalidOptionError(
      `${where}: ${key} must be ${r.expected}, got ${JSON.stringify(shown)}`,
    );
  }
  return r.value;
}

/**
 * Applies the keys of `values` (from `where`, e.g. a file name) on top of
 * `base`. Unknown keys and bad values throw, naming them.
 *
 * @example
 * ```ts
 * import { applyValues, defaultConfig } from "./config.ts";
 * const c = applyValues(defaultConfig(), { lr: 0.01, hidden: [64] }, "example");
 * console.log(c.lr, c.hidden); // 0.01 [ 64 ]
 * try { applyValues(c, { batchsize: 64 }, "run.yaml"); } catch (e) { console.log((e as Error).message); }
 * // run.yaml: unknown key "batchsize" (did you mean batch_size?)
 * ```
 */
export function applyValues(
  base: TrainConfig,
  values: Record<string, unknown>,
  where: string,
): TrainConfig {
  const out = { ...base } as Record<string, unknown>;
  for (const [k, v] of Object.entries(values)) {
    if (!(k in SCHEMA)) {
      throw new InvalidOptionError(
        `${where}: unknown key ${JSON.stringify(k)}${
          suggestion(k, CONFIG_KEYS)
        }`,
      );
    }
    out[k] = checkValue(k as ConfigKey, v, where);
  }
  return checkCombination(out as unknown as TrainConfig, where);
}

/** Checks the rules that involve several keys; `where` names the source. */
export function checkCombination(c: TrainConfig, where: string): TrainConfig {
  if (c.dtype === "bf16" && c.optimizer !== "microadam") {
    throw new InvalidOptionError(
      `${where}: dtype "bf16" needs optimizer "microadam" (Adam, AdamW and AMSGrad update f32 tensors only), got optimizer "${c.optimizer}"`,
    );
  }
  return c;
}

/**
 * The help text listing every flag with its value in `current` (the
 * defaults unless given), which came from `source`.
 *
 * @example
 * ```ts
 * import { helpText } from "./config.ts";
 * console.log(helpText("train.ts").includes("--batch-size")); // true
 * ```
 */
export function helpText(
  command: string,
  current: TrainConfig = defaultConfig(),
  source = "built-in defaults",
): string {
  const lines = [
    `usage: ${command} [--config FILE.yaml] [--resume CHECKPOINT] [--KEY VALUE ...]`,
    "",
    "Values come from the built-in defaults, then the YAML file, then the flags.",
    `The values in brackets are those of ${source}.`,
    "",
    "  --config FILE        YAML file of the keys below (snake_case)",
    "  --resume FILE        continue a run from its checkpoint, bit-exactly",
    "  --help               this text",
  ];
  for (const k of CONFIG_KEYS) {
    const flag = k === "progress" ? "--no-progress" : `${flagOf(k)} V`;
    const help = k === "progress"
      ? "no progress bar"
      : `${SCHEMA[k].help} [${JSON.stringify(current[k])}]`;
    lines.push(`  ${flag.padEnd(20)} ${help}`);
  }
  return lines.join("\n");
}

/**
 * The keys whose values differ between two configurations among those that
 * shape the training trajectory (a resumed run must keep them).
 *
 * @example
 * ```ts
 * import { defaultConfig, trajectoryDifferences } from "./config.ts";
 * const a = defaultConfig();
 * console.log(trajectoryDifferences(a, { ...a, lr: 1, metrics: "m.jsonl" })); // [ "lr" ]
 * ```
 */
export function trajectoryDifferences(
  a: TrainConfig,
  b: TrainConfig,
): ConfigKey[] {
  return CONFIG_KEYS.filter((k) =>
    SCHEMA[k].trajectory && JSON.stringify(a[k]) !== JSON.stringify(b[k])
  );
}
