/**
 * Dead-code removal for assembled WGSL: the functions and the workgroup and
 * private variables that no entry point reaches are dropped. A kernel is the
 * concatenation of shared snippets (see kernels.ts), and a snippet brings
 * every reduction and its workgroup arrays whether the kernel calls it or
 * not. NVIDIA's Vulkan driver counts every workgroup variable of the module
 * in a kernel's workgroup memory, used or not (on the H200, 1040 of the
 * MicroAdam update kernel's 7568 bytes were arrays it never touched), and
 * that memory bounds how many workgroups stay resident and shapes how the
 * compiler allocates registers (bench/RESULTS.md, round 24).
 *
 * Bindings, constants, overrides, structs and aliases are kept as they are:
 * dropping a binding would change a pipeline's layout, and the others cost
 * nothing.
 *
 * @module
 */

/** One top-level declaration of a WGSL module. */
interface Item {
  /** Its text in the source, attributes and the comments before it included. */
  text: string;
  /** The name it declares (`""` for directives and `const_assert`). */
  name: string;
  /** Whether it may be dropped when unreached: a function or a
   * workgroup/private variable. */
  droppable: boolean;
  /** Whether it is an entry point (a `@compute` function). */
  entry: boolean;
  /** Identifiers it mentions, comments excluded. */
  refs: Set<string>;
}

// The source with comments replaced by spaces (newlines kept), so offsets
// still match the original.
function blankComments(src: string): string {
  let out = "";
  let i = 0;
  let depth = 0; // block comments nest in WGSL
  while (i < src.length) {
    if (depth === 0 && src.startsWith("//", i)) {
      const end = src.indexOf("\n", i);
      const stop = end < 0 ? src.length : end;
      out += " ".repeat(stop - i);
      i = stop;
    } else if (src.startsWith("/*", i)) {
      depth++;
      out += "  ";
      i += 2;
    } else if (depth > 0 && src.startsWith("*/", i)) {
      depth--;
      out += "  ";
      i += 2;
    } else {
      out += depth > 0 && src[i] !== "\n" ? " " : src[i];
      i++;
    }
  }
  return out;
}

const IDENT = /[A-Za-z_][A-Za-z0-9_]*/g;

function declaration(code: string): Omit<Item, "text" | "refs"> {
  const body = code.replace(/@\w+(\s*\([^)]*\))?/g, " ").trim();
  const fn = /^fn\s+(\w+)/.exec(body);
  if (fn) {
    return { name: fn[1], droppable: true, entry: /@compute\b/.test(code) };
  }
  const v = /^var\s*(<\s*(\w+)[^>]*>)?\s*(\w+)/.exec(body);
  if (v) {
    const space = v[2] ?? "";
    return {
      name: v[3],
      droppable: space === "workgroup" || space === "private",
      entry: false,
    };
  }
  const named = /^(const|override|struct|alias)\s+(\w+)/.exec(body);
  if (named) return { name: named[2], droppable: false, entry: false };
  // Directives (enable, requires, diagnostic) and const_assert.
  return { name: "", droppable: false, entry: false };
}

// The module's top-level items, in order.
function items(src: string): Item[] {
  const code = blankComments(src);
  const out: Item[] = [];
  let start = 0;
  let depth = 0;
  let paren = 0;
  const close = (end: number) => {
    const text = src.slice(start, end);
    const bare = code.slice(start, end);
    if (bare.trim() !== "") {
      out.push({
        text,
        ...declaration(bare),
        refs: new Set(bare.match(IDENT) ?? []),
      });
    } else if (out.length) {
      out[out.length - 1].text += text; // trailing comments or blanks
    } else {
      out.push({
        text,
        name: "",
        droppable: false,
        entry: false,
        refs: new Set(),
      });
    }
    start = end;
  };
  for (let i = 0; i < code.length; i++) {
    const c = code[i];
    if (c === "(") paren++;
    else if (c === ")") paren--;
    else if (c === "{") depth++;
    else if (c === "}") {
      depth--;
      if (depth === 0 && paren === 0) {
        // A struct's closing brace may be followed by a `;`.
        let j = i + 1;
        while (j < code.length && /[ \t]/.test(code[j])) j++;
        close(code[j] === ";" ? j + 1 : i + 1);
        i = start - 1;
      }
    } else if (c === ";" && depth === 0 && paren === 0) {
      close(i + 1);
    }
  }
  if (start < src.length) close(src.length);
  return out;
}

/**
 * `src` without the functions and workgroup or private variables that no
 * entry point (`@compute` function) reaches. A module without an entry
 * point comes back unchanged.
 *
 * @example
 * ```ts
 * import { pruneWgsl } from "./wgsl_prune.ts";
 * const src = `
 * var<workgroup> used: array<u32, 64>;
 * var<workgroup> unused: array<u32, 256>;
 * fn helper() -> u32 { return unused[0]; }
 * @compute @workgroup_size(64)
 * fn main(@builtin(local_invocation_index) i: u32) { used[i] = i; }
 * `;
 * const out = pruneWgsl(src);
 * console.log(out.includes("used:"), out.includes("unused"), out.includes("helper")); // true false false
 * ```
 */
export function pruneWgsl(src: string): string {
  const all = items(src);
  if (!all.some((it) => it.entry)) return src;
  const byName = new Map<string, Item[]>();
  for (const it of all) {
    if (it.name) byName.set(it.name, [...(byName.get(it.name) ?? []), it]);
  }
  const kept = new Set<Item>();
  // Entry points and everything that is never dropped are reached.
  const stack = all.filter((it) => it.entry || !it.droppable);
  while (stack.length) {
    const it = stack.pop()!;
    if (kept.has(it)) continue;
    kept.add(it);
    for (const r of it.refs) {
      if (r === it.name) continue;
      for (const dep of byName.get(r) ?? []) {
        if (!kept.has(dep)) stack.push(dep);
      }
    }
  }
  return all.filter((it) => kept.has(it)).map((it) => it.text).join("");
}
