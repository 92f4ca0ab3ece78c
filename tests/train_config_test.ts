/**
 * src/train/config.ts and src/train/cli.ts: defaults, YAML over defaults, flags over YAML; unknown
 * keys and flags rejected with the closest valid name; bad values rejected
 * naming the key and where it came from; the committed default config file
 * is valid; resume checks list the keys that change the trajectory.
 */

import assert from "node:assert/strict";
import {
  applyValues,
  closest,
  CONFIG_KEYS,
  defaultConfig,
  helpText,
  trajectoryDifferences,
} from "../src/train/config.ts";
import { parseCommandLine, parseConfigYaml } from "../src/train/cli.ts";
import { InvalidOptionError } from "../src/errors.ts";

function throwsOption(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(
      e instanceof InvalidOptionError,
      `not an InvalidOptionError: ${e}`,
    );
    assert.match(e.message, pattern);
    return true;
  });
}

async function rejectsOption(
  p: Promise<unknown>,
  pattern: RegExp,
): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(
      e instanceof InvalidOptionError,
      `not an InvalidOptionError: ${e}`,
    );
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("YAML values replace defaults; flags replace YAML values; the rest stay", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/run.yaml`;
    await Deno.writeTextFile(
      file,
      "optimizer: adamw\nlr: 3.0e-3\nhidden: [64, 32]\nepochs: 4\nmetrics: m.jsonl\n",
    );
    const { config, configFile, given } = await parseCommandLine([
      "--config",
      file,
      "--lr",
      "0.01",
      "--hidden=128",
      "--no-progress",
      "--weight-decay",
      "null",
    ]);
    assert.equal(configFile, file);
    assert.equal(config.optimizer, "adamw"); // YAML
    assert.equal(config.epochs, 4); // YAML
    assert.equal(config.lr, 0.01); // flag over YAML
    assert.deepEqual(config.hidden, [128]); // flag over YAML
    assert.equal(config.progress, false);
    assert.equal(config.weight_decay, null);
    assert.equal(config.metrics, "m.jsonl");
    assert.equal(config.batch_size, defaultConfig().batch_size); // default
    assert.deepEqual(
      [...given].sort(),
      [
        "epochs",
        "hidden",
        "lr",
        "metrics",
        "optimizer",
        "progress",
        "weight_decay",
      ],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("unknown keys and flags name the closest valid one", async () => {
  throwsOption(
    () => parseConfigYaml("batchsize: 64\n", "run.yaml", defaultConfig()),
    /run\.yaml: unknown key "batchsize" \(did you mean batch_size\?\)/,
  );
  throwsOption(
    () => applyValues(defaultConfig(), { learning_rate: 1 }, "x.yaml"),
    /unknown key "learning_rate"/,
  );
  throwsOption(
    () => applyValues(defaultConfig(), { zzz: 1 }, "x.yaml"),
    /unknown key "zzz"$/,
  );
  await rejectsOption(
    parseCommandLine(["--epoch", "3"]),
    /unknown flag --epoch \(did you mean --epochs\?\)/,
  );
  await rejectsOption(
    parseCommandLine(["--batch_size", "3"]),
    /unknown flag --batch_size \(did you mean --batch-size\?\)/,
  );
  await rejectsOption(parseCommandLine(["--lr"]), /command line: .*--lr/);
  await rejectsOption(parseCommandLine(["positional"]), /command line/);
  assert.equal(closest("optimiser", CONFIG_KEYS), "optimizer");
  assert.equal(closest("warmup", CONFIG_KEYS), "warmup_steps");
});

Deno.test("bad values name the key, where it came from and what was expected", async () => {
  const base = defaultConfig();
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ lr: -1 }, /lr must be a finite number > 0, got -1/],
    [{ lr: "fast" }, /lr must be a finite number > 0, got "fast"/],
    [
      { optimizer: "sgd" },
      /optimizer must be one of "microadam", "adamw", "amsgrad", "adam", got "sgd"/,
    ],
    [{ batch_size: 0 }, /batch_size must be an integer in \[1, 65536\], got 0/],
    [{ epochs: 1.5 }, /epochs must be an integer >= 1/],
    [{ hidden: [64, -1] }, /hidden must be a list of positive integers/],
    [{ density: 2 }, /density must be a number in \(0, 1\]/],
    [{ window: 0 }, /window must be an integer in \[1, 255\]/],
    [{ schedule: "linear" }, /schedule must be one of "constant", "cosine"/],
    [{ progress: "yes" }, /progress must be true or false/],
    [
      { optimizer: "adamw", dtype: "bf16" },
      /dtype "bf16" needs optimizer "microadam" .* got optimizer "adamw"/,
    ],
  ];
  for (const [values, pattern] of cases) {
    throwsOption(() => applyValues(base, values, "cfg.yaml"), pattern);
  }
  throwsOption(
    () => applyValues(base, { lr: -1 }, "cfg.yaml"),
    /^cfg\.yaml: lr/,
  );
  await rejectsOption(
    parseCommandLine(["--lr", "abc"]),
    /--lr: lr must be a finite number > 0, got "abc"/,
  );
  await rejectsOption(
    parseCommandLine(["--hidden", "64,x"]),
    /--hidden: hidden must be a list of positive integers/,
  );
  await rejectsOption(
    parseCommandLine(["--batch-size", ""]),
    /--batch-size: batch_size must be an integer/,
  );
  await rejectsOption(
    parseCommandLine(["--optimizer", "adamw", "--dtype", "bf16"]),
    /command line: dtype "bf16" needs optimizer "microadam"/,
  );
});

Deno.test("YAML errors: syntax, a document that is not a mapping, an unreadable file", async () => {
  throwsOption(
    () => parseConfigYaml("lr: [1,\n", "bad.yaml", defaultConfig()),
    /bad\.yaml: not valid YAML/,
  );
  throwsOption(
    () => parseConfigYaml("- 1\n- 2\n", "list.yaml", defaultConfig()),
    /list\.yaml: expected a mapping .* got a list/,
  );
  assert.deepEqual(
    parseConfigYaml("# only a comment\n", "empty.yaml", defaultConfig()),
    defaultConfig(),
  );
  await rejectsOption(
    parseCommandLine(["--config", "/nonexistent.yaml"]),
    /--config \/nonexistent\.yaml: cannot read it/,
  );
});

Deno.test("the committed configs/fashion_mnist.yaml is valid, names every key, and --help lists every flag", async () => {
  const path = new URL("../configs/fashion_mnist.yaml", import.meta.url);
  const text = await Deno.readTextFile(path);
  const config = parseConfigYaml(
    text,
    "configs/fashion_mnist.yaml",
    defaultConfig(),
  );
  for (const k of CONFIG_KEYS) assert.match(text, new RegExp(`^${k}:`, "m"), k);
  assert.equal(config.optimizer, "microadam");
  assert.deepEqual(config.hidden, [256, 128]);
  const help = helpText("train");
  for (const k of CONFIG_KEYS) {
    assert.ok(
      help.includes(
        k === "progress" ? "--no-progress" : `--${k.replaceAll("_", "-")}`,
      ),
      k,
    );
  }
});

Deno.test("trajectoryDifferences: keys that shape training, not logging or output paths", () => {
  const a = defaultConfig();
  assert.deepEqual(trajectoryDifferences(a, { ...a }), []);
  assert.deepEqual(
    trajectoryDifferences(a, {
      ...a,
      lr: 0.5,
      seed: 9,
      hidden: [8],
      metrics: "x",
      log_every: 7,
      checkpoint: "c",
    }),
    ["lr", "seed", "hidden"],
  );
});
