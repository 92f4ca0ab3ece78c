/**
 * The folder layout is the architecture: imports between the folders of
 * `src/` go one way (no cycle), the backend-neutral folders import no backend,
 * and the GPU optimizers and CPU twins do not import each other.
 */

import assert from "node:assert/strict";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const src = join(root, "src");

/** Folder of a file under src/ ("errors" for src/errors.ts). */
function folderOf(file: string): string {
  const rel = relative(src, file);
  return rel.includes("/") ? rel.split("/")[0] : rel.replace(/\.ts$/, "");
}

async function* files(dir: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) yield* files(p);
    else if (e.name.endsWith(".ts")) yield p;
  }
}

/** Edges folder → folder from the relative imports of every src/ file. */
async function folderGraph(): Promise<Map<string, Map<string, string>>> {
  const graph = new Map<string, Map<string, string>>();
  for await (const file of files(src)) {
    const from = folderOf(file);
    const text = await Deno.readTextFile(file);
    for (
      const m of text.matchAll(/(?:import|export)[^"';]*?from\s+"(\.[^"]+)"/g)
    ) {
      const target = join(dirname(file), m[1]);
      if (!target.startsWith(src + "/")) continue; // kernels/*.wgsl, mod.ts
      const to = folderOf(target);
      if (to === from) continue;
      const edges = graph.get(from) ?? new Map<string, string>();
      edges.set(to, `${relative(root, file)} imports ${m[1]}`);
      graph.set(from, edges);
    }
  }
  return graph;
}

Deno.test("structure: no import cycle between the folders of src/", async () => {
  const graph = await folderGraph();
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (node: string) => {
    if (state.get(node) === "done") return;
    if (state.get(node) === "open") {
      const cycle = path.slice(path.indexOf(node));
      const why = cycle.map((f, i) =>
        graph.get(f)!.get(cycle[(i + 1) % cycle.length]) ?? ""
      );
      assert.fail(
        `import cycle ${[...cycle, node].join(" → ")}:\n${why.join("\n")}`,
      );
    }
    state.set(node, "open");
    path.push(node);
    for (const next of graph.get(node)?.keys() ?? []) visit(next);
    path.pop();
    state.set(node, "done");
  };
  for (const node of graph.keys()) visit(node);
});

Deno.test("structure: core, numeric and errors import no other folder; optim and reference not each other", async () => {
  const graph = await folderGraph();
  const allowed: Record<string, string[]> = {
    errors: [],
    numeric: [],
    core: ["errors"],
  };
  for (const [from, only] of Object.entries(allowed)) {
    for (const [to, why] of graph.get(from) ?? []) {
      assert.ok(only.includes(to), `${from} may not import ${to}: ${why}`);
    }
  }
  for (const [a, b] of [["optim", "reference"], ["reference", "optim"]]) {
    const why = graph.get(a)?.get(b);
    assert.equal(why, undefined, `${a} imports ${b}: ${why}`);
  }
});
