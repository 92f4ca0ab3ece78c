/**
 * Reading a training configuration from a YAML file (`npm:yaml`) and
 * command-line flags (`node:util` `parseArgs`): defaults, then the file,
 * then the flags (see `./config.ts` for the keys and their checks).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parse as parseYaml } from "yaml";
import { InvalidOptionError } from "../errors.ts";
import {
  applyValues,
  checkCombination,
  checkValue,
  CONFIG_KEYS,
  type ConfigKey,
  defaultConfig,
  flagOf,
  SCHEMA,
  suggestion,
  type TrainConfig,
} from "./config.ts";

/**
 * Parses a YAML configuration (a mapping of keys to values) and applies it
 * to `base`. `name` (the file) is named in errors.
 *
 * @throws {InvalidOptionError} For YAML syntax errors, a document that is
 * not a mapping, unknown keys and bad values.
 *
 * @example
 * ```ts
 * import { defaultConfig } from "./config.ts";
 * import { parseConfigYaml } from "./cli.ts";
 * const c = parseConfigYaml("optimizer: adamw\nlr: 3.0e-3\nhidden: [512]\n", "run.yaml", defaultConfig());
 * console.log(c.optimizer, c.lr, c.hidden); // adamw 0.003 [ 512 ]
 * ```
 */
export function parseConfigYaml(
  text: string,
  name: string,
  base: TrainConfig,
): TrainConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new InvalidOptionError(
      `${name}: not valid YAML: ${(e as Error).message}`,
    );
  }
  if (doc === null || doc === undefined) return base;
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new InvalidOptionError(
      `${name}: expected a mapping of keys to values (key: value lines), got ${
        Array.isArray(doc) ? "a list" : JSON.stringify(doc)
      }`,
    );
  }
  return applyValues(base, doc as Record<string, unknown>, name);
}

/** Command-line options besides the config keys. */
export interface CommandLine {
  /** The merged configuration. */
  config: TrainConfig;
  /** `--config`: the YAML file read, if any. */
  configFile?: string;
  /** `--resume`: a checkpoint to continue from. */
  resume?: string;
  /** `--help`. */
  help: boolean;
  /** Keys given explicitly (by the file or flags), for resume checks. */
  given: Set<ConfigKey>;
}

/**
 * Parses command-line arguments: `--config FILE` (YAML) is applied over
 * `defaults` (or over `defaultFile` when no `--config` is given), then each
 * `--key value` flag over that. `--resume FILE`, `--help`, and
 * `--no-progress` are extra.
 *
 * @throws {InvalidOptionError} For an unknown flag (with the closest valid
 * one), a missing value, or a bad value, naming the flag.
 *
 * @example
 * ```ts
 * import { parseCommandLine } from "./cli.ts";
 * const { config } = await parseCommandLine(["--optimizer", "adamw", "--lr=0.002", "--hidden", "64,32"]);
 * console.log(config.optimizer, config.lr, config.hidden); // adamw 0.002 [ 64, 32 ]
 * ```
 */
export async function parseCommandLine(
  args: string[],
  options: { defaultFile?: string } = {},
): Promise<CommandLine> {
  const flagOptions: Record<string, { type: "string" | "boolean" }> = {
    config: { type: "string" },
    resume: { type: "string" },
    help: { type: "boolean" },
    "no-progress": { type: "boolean" },
  };
  for (const k of CONFIG_KEYS) {
    flagOptions[k.replaceAll("_", "-")] = {
      type: k === "progress" ? "boolean" : "string",
    };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args,
      options: flagOptions,
      strict: true,
      allowPositionals: false,
    });
  } catch (e) {
    const msg = (e as Error).message;
    const unknown = msg.match(/Unknown option '([^']+)'/);
    if (unknown) {
      const flags = Object.keys(flagOptions).map((f) => `--${f}`);
      throw new InvalidOptionError(
        `unknown flag ${unknown[1]}${
          suggestion(
            unknown[1].replace(/^-+/, ""),
            flags.map((f) => f.replace(/^--?/, "").replaceAll("-", "_")),
          )
            .replace(/did you mean (\S+)\?/, (_, k) =>
              `did you mean ${flagOf(k)}?`)
        }; --help lists them`,
      );
    }
    throw new InvalidOptionError(`command line: ${msg}`);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const given = new Set<ConfigKey>();
  let config = defaultConfig();
  const file = values.config as string | undefined ?? options.defaultFile;
  if (file !== undefined) {
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (e) {
      throw new InvalidOptionError(
        `--config ${file}: cannot read it (${(e as Error).message})`,
      );
    }
    config = parseConfigYaml(text, file, config);
    if (values.config !== undefined) {
      for (const k of Object.keys(parseYaml(text) ?? {})) {
        given.add(k as ConfigKey);
      }
    }
  }
  for (const k of CONFIG_KEYS) {
    const flag = k.replaceAll("_", "-");
    const raw = values[flag];
    if (raw === undefined) continue;
    const value = typeof raw === "boolean" ? raw : SCHEMA[k].fromString(raw);
    const out = { ...config } as Record<string, unknown>;
    out[k] = checkValue(k, value, flagOf(k), raw);
    config = out as unknown as TrainConfig;
    given.add(k);
  }
  if (values["no-progress"]) {
    config = { ...config, progress: false };
    given.add("progress");
  }
  config = checkCombination(config, "command line");
  const result: CommandLine = {
    config,
    help: values.help === true,
    given,
  };
  if (values.config !== undefined) result.configFile = values.config as string;
  if (values.resume !== undefined) result.resume = values.resume as string;
  return result;
}
