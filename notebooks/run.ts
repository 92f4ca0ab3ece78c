/**
 * Executes every notebook in this folder headless (Jupyter's nbconvert with
 * the Deno kernel) and fails if any cell errors, if a notebook has no
 * `image/svg+xml` plot, or no verdict table. Each notebook's wall time and
 * scale go into its metadata (`microadam`), then `summary.ts` rewrites
 * `README.md` from the executed notebooks.
 *
 * ```sh
 * deno task notebooks            # execute in place (commit the outputs), refresh README.md
 * deno task notebooks --check    # execute into a temporary folder; leave the repository as it is
 * deno task notebooks 03         # only the notebooks whose name contains "03"
 * ```
 *
 * Needs `jupyter nbconvert` (Debian: jupyter-nbconvert, python3-nbclient,
 * jupyter-client; `.ci/setup` installs them). Registers the Deno kernel
 * (`deno jupyter --install`) when Jupyter does not list it. Notebooks read
 * `MICROADAM_NB_SCALE` (`ci` by default, `full` for the larger setting).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { writeReadme } from "./summary.ts";

const here = new URL(".", import.meta.url).pathname;
const { values, positionals } = parseArgs({
  args: Deno.args,
  options: { check: { type: "boolean", default: false } },
  allowPositionals: true,
});

async function run(cmd: string, args: string[], cwd = here) {
  const out = await new Deno.Command(cmd, {
    args,
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output().catch((e) => {
    throw new Error(
      `${cmd} not found (${e.message}); run \`bash .ci/setup\` to install Jupyter's nbconvert`,
    );
  });
  return {
    ok: out.success,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

// Mesa (WebGPU in the kernel) wants a private runtime directory.
const xdg = Deno.env.get("XDG_RUNTIME_DIR");
if (!xdg || !(await Deno.stat(xdg).then((s) => s.isDirectory, () => false))) {
  const dir = await Deno.makeTempDir({ prefix: "xdg-" });
  await Deno.chmod(dir, 0o700);
  Deno.env.set("XDG_RUNTIME_DIR", dir);
}

const specs = await run("jupyter", ["kernelspec", "list", "--json"]);
if (!specs.ok) {
  throw new Error(`jupyter kernelspec list failed:\n${specs.stderr}`);
}
if (!JSON.parse(specs.stdout).kernelspecs?.deno) {
  console.log("registering the Deno kernel: deno jupyter --install");
  const r = await run(Deno.execPath(), ["jupyter", "--install"]);
  if (!r.ok) throw new Error(`deno jupyter --install failed:\n${r.stderr}`);
}

const names = [...Deno.readDirSync(here)]
  .map((e) => e.name)
  .filter((n) => n.endsWith(".ipynb"))
  .filter((n) =>
    positionals.length === 0 || positionals.some((p) => n.includes(p))
  )
  .sort();
if (names.length === 0) throw new Error(`no notebooks matched in ${here}`);

const outDir = values.check
  ? await Deno.makeTempDir({ prefix: "notebooks-" })
  : here;
const scale = Deno.env.get("MICROADAM_NB_SCALE") ?? "ci";
/** Executes one notebook into `outDir`; the problems found in its outputs. */
async function execute(name: string): Promise<string[]> {
  const r = await run("jupyter", [
    "nbconvert",
    "--to",
    "notebook",
    "--execute",
    "--ExecutePreprocessor.kernel_name=deno",
    "--ExecutePreprocessor.timeout=1800",
    // After a cell's reply, nbclient waits this long for its outputs, then
    // drops them silently (default 4 s): a loaded CI machine needs longer.
    "--ExecutePreprocessor.iopub_timeout=120",
    "--ExecutePreprocessor.record_timing=False",
    "--output-dir",
    outDir,
    "--output",
    name,
    name,
  ]);
  if (!r.ok) return [`nbconvert failed\n${r.stderr.slice(-4000)}`];
  return checkNotebook(
    JSON.parse(await Deno.readTextFile(`${outDir}/${name}`)),
  );
}

// Deno's kernel (2.9) now and then publishes a display after the cell's
// idle status, and nbclient drops it: a notebook whose outputs came back
// incomplete (no cell error) is executed again, at most twice more.
const ATTEMPTS = 3;
const failures: string[] = [];
for (const name of names) {
  const t0 = performance.now();
  let problems: string[] = [];
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    problems = await execute(name);
    const lostOutputs = problems.length > 0 &&
      problems.every((p) => p.startsWith("no "));
    if (!lostOutputs) break;
    if (attempt < ATTEMPTS) {
      console.log(`  ${name}: ${problems.join("; ")}; executing it again`);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  if (problems.length) failures.push(`${name}: ${problems.join("; ")}`);
  const path = `${outDir}/${name}`;
  const nb = JSON.parse(await Deno.readTextFile(path).catch(() => "null"));
  if (nb) {
    nb.metadata.microadam = { wall_seconds: Math.round(seconds), scale };
    await Deno.writeTextFile(path, JSON.stringify(nb, null, 1) + "\n");
  }
  console.log(
    `${problems.length ? "✗" : "✓"} ${name} (${seconds.toFixed(0)} s)`,
  );
}

if (failures.length) {
  console.error(failures.join("\n\n"));
  Deno.exit(1);
}
if (!values.check) {
  await writeReadme(here);
  // The README as `deno fmt` writes it. (The notebooks are left out of
  // `deno fmt`: Deno 2.9's check flags executed notebooks that formatting
  // leaves byte for byte the same.)
  const fmt = await run(Deno.execPath(), ["fmt", "--quiet", "README.md"]);
  if (!fmt.ok) throw new Error(`deno fmt failed:\n${fmt.stderr}`);
  console.log("notebooks/README.md rewritten from the executed notebooks");
} else {
  await Deno.remove(outDir, { recursive: true });
}

interface Output {
  output_type: string;
  name?: string;
  data?: Record<string, unknown>;
  ename?: string;
  evalue?: string;
}

/** What an executed notebook must hold: no errors, a plot, a verdict table. */
function checkNotebook(nb: { cells: { outputs?: Output[] }[] }): string[] {
  const outputs = nb.cells.flatMap((c) => c.outputs ?? []);
  const problems: string[] = [];
  for (const o of outputs) {
    if (o.output_type === "error") {
      problems.push(`cell error ${o.ename}: ${o.evalue}`);
    }
  }
  if (!outputs.some((o) => o.data?.["image/svg+xml"])) {
    problems.push("no image/svg+xml output");
  }
  const md = (o: Output) => {
    const v = o.data?.["text/markdown"];
    return Array.isArray(v) ? v.join("") : String(v ?? "");
  };
  if (!outputs.some((o) => md(o).startsWith("| claim | measured | holds? |"))) {
    problems.push("no verdict table");
  }
  return problems;
}
