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
const failures: string[] = [];
for (const name of names) {
  const t0 = performance.now();
  const r = await run("jupyter", [
    "nbconvert",
    "--to",
    "notebook",
    "--execute",
    "--ExecutePreprocessor.kernel_name=deno",
    "--ExecutePreprocessor.timeout=1800",
    "--ExecutePreprocessor.record_timing=False",
    "--output-dir",
    outDir,
    "--output",
    name,
    name,
  ]);
  const seconds = (performance.now() - t0) / 1000;
  if (!r.ok) {
    failures.push(`${name}: nbconvert failed\n${r.stderr.slice(-4000)}`);
    console.log(`✗ ${name} (${seconds.toFixed(0)} s)`);
    continue;
  }
  const path = `${outDir}/${name}`;
  const nb = JSON.parse(await Deno.readTextFile(path));
  const problems = checkNotebook(nb);
  if (problems.length) failures.push(`${name}: ${problems.join("; ")}`);
  nb.metadata.microadam = { wall_seconds: Math.round(seconds), scale };
  await Deno.writeTextFile(path, JSON.stringify(nb, null, 1) + "\n");
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
