/**
 * Every GPU-machine measurement in one script: correctness against the
 * authors' golden trajectories on this device, then time per optimizer step
 * (GPU timestamps) for each optimizer and size, next to PyTorch's fused
 * Adam/AdamW on the same GPU when `python3 -c "import torch"` works.
 *
 *   deno run -A bench/device.ts [--sizes 20,24,27] [--steps 50] [--json out.json]
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  Adam,
  AdamW,
  AMSGrad,
  MicroAdam,
  MicroAdamCpu,
  requestDevice,
} from "../mod.ts";
import { type GpuOptimizer, hasExactFma } from "../extend.ts";
import { goldenOptions, loadGoldenCases, splitStep } from "../tests/golden.ts";
import { readBuffer } from "../src/gpu/buffers.ts";

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "20,24,27" },
    steps: { type: "string", default: "50" },
    json: { type: "string" },
    "skip-torch": { type: "boolean", default: false },
  },
});
const sizes = values.sizes!.split(",").map((x) => 2 ** Number(x));
const steps = Number(values.steps);

const device = await requestDevice();
const info = (await navigator.gpu.requestAdapter())?.info;
console.log(
  `device: ${info?.description || info?.vendor} (${info?.architecture})`,
);
console.log(`date: ${new Date().toISOString()}`);
console.log(
  `fma() exact on this device: ${hasExactFma(device)} (${
    hasExactFma(device) ? "hardware" : "integer"
  } path for fma_short/div_rn)`,
);
const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC |
  GPUBufferUsage.COPY_DST;

// ---- Correctness on this device: golden cases, GPU bf16 ---------------------
const golden: Record<string, { exact: number; within1: number }> = {};
for (const c of await loadGoldenCases()) {
  const cfg = c.config;
  const tensors = splitStep(c.params0, 0, c.sizes).map((p, i) => {
    const param = device.createBuffer({
      size: Math.ceil(p.length / 2) * 4,
      usage,
    });
    const padded = new Uint16Array(Math.ceil(p.length / 2) * 2);
    padded.set(p);
    device.queue.writeBuffer(param, 0, padded);
    const grad = device.createBuffer({ size: param.size, usage });
    return { param, grad, length: p.length, name: `t${i}` };
  });
  const opt = new MicroAdam(device, tensors, goldenOptions(c));
  let exact = 0, within1 = 0, total = 0;
  for (let s = 0; s < cfg.steps; s++) {
    splitStep(c.grads, s, c.sizes).forEach((g, i) => {
      const padded = new Uint16Array(Math.ceil(g.length / 2) * 2);
      padded.set(g);
      device.queue.writeBuffer(tensors[i].grad, 0, padded);
    });
    opt.step();
    const want = splitStep(c.params, s, c.sizes);
    for (let i = 0; i < tensors.length; i++) {
      const got = new Uint16Array(await readBuffer(device, tensors[i].param));
      for (let j = 0; j < c.sizes[i]; j++) {
        const ord = (x: number) => (x & 0x8000 ? -(x & 0x7fff) : x);
        const d = Math.abs(ord(got[j]) - ord(want[i][j]));
        total++;
        if (d === 0) exact++;
        if (d <= 1) within1++;
      }
    }
  }
  golden[c.name] = { exact: exact / total, within1: within1 / total };
  console.log(
    `golden ${c.name}: ${(100 * exact / total).toFixed(4)} % bit-exact, ${
      (100 * within1 / total).toFixed(4)
    } % within 1 bf16 ulp (all steps, all tensors)`,
  );
  opt.dispose();
  for (const t of tensors) {
    t.param.destroy();
    t.grad.destroy();
  }
}

// ---- Correctness on this device: f32 mode against the CPU reference ----------
{
  const sizes = [1, 7, 1000, 4097, 70001];
  const seed = 1234;
  let x = seed;
  const rand = () =>
    ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32) - 0.5;
  const p0 = sizes.map((n) => new Float32Array(n).map(rand));
  const gpu = p0.map((p, i) => {
    const param = device.createBuffer({ size: 4 * p.length, usage });
    device.queue.writeBuffer(param, 0, p);
    const grad = device.createBuffer({ size: 4 * p.length, usage });
    return { param, grad, length: p.length, name: `t${i}` };
  });
  const cpu = p0.map((p, i) => ({
    param: p.slice(),
    grad: new Float32Array(p.length),
    name: `t${i}`,
  }));
  const o = {
    lr: 1e-3,
    weightDecay: 0.01,
    topkBlockSize: 1000,
    efBlockSize: 300,
  };
  const g = new MicroAdam(device, gpu, o);
  const c = new MicroAdamCpu(cpu, o);
  for (let s = 0; s < 20; s++) {
    cpu.forEach((t, i) => {
      t.grad.set(t.grad.map(rand));
      device.queue.writeBuffer(gpu[i].grad, 0, t.grad);
    });
    g.step();
    c.step();
  }
  const gs = await g.stateDict();
  const cs = c.stateDict();
  let stateDiff = 0, num = 0, den = 0;
  for (let i = 0; i < sizes.length; i++) {
    for (const k of ["window", "codes", "stats"]) {
      const a = gs.tensors[i].buffers[k], b = cs.tensors[i].buffers[k];
      for (let j = 0; j < a.length; j++) if (a[j] !== b[j]) stateDiff++;
    }
    const got = new Float32Array(await readBuffer(device, gpu[i].param));
    for (let j = 0; j < sizes[i]; j++) {
      num += (got[j] - cpu[i].param[j]) ** 2;
      den += cpu[i].param[j] ** 2;
    }
  }
  console.log(
    `f32 GPU vs CPU reference, 20 steps: state bytes differing ${stateDiff}, params relative error ${
      Math.sqrt(num / den).toExponential(2)
    }`,
  );
  g.dispose();
}

// ---- Timing -----------------------------------------------------------------
const querySet = device.createQuerySet({ type: "timestamp", count: 2 * steps });
const resolve = device.createBuffer({
  size: 16 * steps,
  usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
});

async function timeSteps(opt: GpuOptimizer): Promise<number[]> {
  for (let i = 0; i < 3; i++) opt.step(); // warm-up (pipelines, caches)
  await device.queue.onSubmittedWorkDone();
  for (let i = 0; i < steps; i++) {
    opt.step({
      timestampWrites: {
        querySet,
        beginningOfPassWriteIndex: 2 * i,
        endOfPassWriteIndex: 2 * i + 1,
      },
    });
  }
  const enc = device.createCommandEncoder();
  enc.resolveQuerySet(querySet, 0, 2 * steps, resolve, 0);
  device.queue.submit([enc.finish()]);
  const t = new BigUint64Array(await readBuffer(device, resolve));
  const ms: number[] = [];
  for (let i = 0; i < steps; i++) {
    ms.push(Number(t[2 * i + 1] - t[2 * i]) / 1e6);
  }
  return ms.sort((a, b) => a - b);
}

// Median time of each kernel over `steps` profiled steps (each dispatch in
// its own timed pass).
async function profileSteps(opt: GpuOptimizer): Promise<Map<string, number>> {
  const perStep: string[][] = [];
  const qs = device.createQuerySet({ type: "timestamp", count: 64 * steps });
  const out = device.createBuffer({
    size: 8 * 64 * steps,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const labels: string[] = [];
  for (let i = 0; i < steps; i++) {
    const mine: string[] = [];
    const enc = device.createCommandEncoder();
    // Each step's queries start where the previous step's ended.
    const before = labels.length;
    opt.step({ encoder: enc, profile: { querySet: qs, labels } });
    mine.push(...labels.slice(before));
    device.queue.submit([enc.finish()]);
    perStep.push(mine);
  }
  const enc = device.createCommandEncoder();
  enc.resolveQuerySet(qs, 0, 2 * labels.length, out, 0);
  device.queue.submit([enc.finish()]);
  const t = new BigUint64Array(await readBuffer(device, out));
  const byKernel = new Map<string, number[]>();
  labels.forEach((label, i) => {
    const list = byKernel.get(label) ?? [];
    list.push(Number(t[2 * i + 1] - t[2 * i]) / 1e6);
    byKernel.set(label, list);
  });
  qs.destroy();
  out.destroy();
  // Several dispatches of one kernel in a step are summed per step.
  const result = new Map<string, number>();
  for (const [label, list] of byKernel) {
    const per = list.length / steps;
    const sums: number[] = [];
    for (let i = 0; i < steps; i++) {
      sums.push(list.slice(i * per, (i + 1) * per).reduce((a, b) => a + b, 0));
    }
    sums.sort((a, b) => a - b);
    result.set(label, sums[Math.floor(steps / 2)]);
  }
  return result;
}

type Row = {
  optimizer: string;
  params: number;
  medianMs: number;
  minMs: number;
  bytesPerParam: number;
};
const rows: Row[] = [];
const profiles: {
  optimizer: string;
  params: number;
  kernels: Record<string, number>;
}[] = [];
const makers: [
  string,
  2 | 4,
  (p: GPUBuffer, g: GPUBuffer, n: number) => GpuOptimizer,
][] = [
  [
    "MicroAdam f32",
    4,
    (param, grad, n) =>
      new MicroAdam(device, [{ param, grad, length: n }], { lr: 1e-4 }),
  ],
  [
    "MicroAdam bf16",
    2,
    (param, grad, n) =>
      new MicroAdam(device, [{ param, grad, length: n }], {
        lr: 1e-4,
        dtype: "bf16",
      }),
  ],
  [
    "Adam",
    4,
    (param, grad, n) =>
      new Adam(device, [{ param, grad, length: n }], { lr: 1e-4 }),
  ],
  [
    "AdamW",
    4,
    (param, grad, n) =>
      new AdamW(device, [{ param, grad, length: n }], { lr: 1e-4 }),
  ],
  [
    "AMSGrad",
    4,
    (param, grad, n) =>
      new AMSGrad(device, [{ param, grad, length: n }], { lr: 1e-4 }),
  ],
];
for (const n of sizes) {
  for (const [name, bpe, make] of makers) {
    const param = device.createBuffer({ size: n * bpe, usage });
    const grad = device.createBuffer({ size: n * bpe, usage });
    // Random gradients, written in chunks (writeBuffer has a size limit).
    const chunk = 1 << 22;
    for (let at = 0; at < n; at += chunk) {
      const m = Math.min(chunk, n - at);
      const data = bpe === 4
        ? new Float32Array(m).map(() => Math.random() - 0.5)
        : new Uint16Array(m).map(() =>
          0x3c00 | Math.floor(Math.random() * 0x3ff) |
          (Math.random() < 0.5 ? 0x8000 : 0)
        );
      device.queue.writeBuffer(grad, at * bpe, data);
    }
    const opt = make(param, grad, n);
    const ms = await timeSteps(opt);
    if (name.startsWith("MicroAdam")) {
      const kernels = await profileSteps(opt);
      console.log(
        `  per kernel (median ms, one pass each): ${
          [...kernels].map(([k, v]) => `${k} ${v.toFixed(3)}`).join(", ")
        }`,
      );
      profiles.push({
        optimizer: name,
        params: n,
        kernels: Object.fromEntries(kernels),
      });
    }
    rows.push({
      optimizer: name,
      params: n,
      medianMs: ms[Math.floor(ms.length / 2)],
      minMs: ms[0],
      bytesPerParam: opt.stateBytes() / n,
    });
    console.log(
      `${name.padEnd(15)} d=2^${Math.log2(n)}  median ${
        rows.at(-1)!.medianMs.toFixed(3)
      } ms  min ${rows.at(-1)!.minMs.toFixed(3)} ms  state ${
        rows.at(-1)!.bytesPerParam.toFixed(3)
      } B/param`,
    );
    opt.dispose();
    param.destroy();
    grad.destroy();
  }
}

// ---- PyTorch reference on the same GPU ----------------------------------------
const torchRows: Row[] = [];
if (!values["skip-torch"]) {
  const py = `
import json, sys, torch
sizes = ${JSON.stringify(sizes)}; steps = ${steps}
out = []
for n in sizes:
    for name, ctor in [("torch Adam fused", lambda p: torch.optim.Adam([p], lr=1e-4, fused=True)),
                       ("torch AdamW fused", lambda p: torch.optim.AdamW([p], lr=1e-4, fused=True))]:
        p = torch.zeros(n, device="cuda", requires_grad=True)
        p.grad = torch.randn(n, device="cuda")
        opt = ctor(p)
        for _ in range(3): opt.step()
        torch.cuda.synchronize()
        times = []
        for _ in range(steps):
            a = torch.cuda.Event(enable_timing=True); b = torch.cuda.Event(enable_timing=True)
            a.record(); opt.step(); b.record(); b.synchronize(); times.append(a.elapsed_time(b))
        times.sort()
        out.append({"optimizer": name, "params": n, "medianMs": times[len(times)//2], "minMs": times[0], "bytesPerParam": 8})
        del opt, p
        torch.cuda.empty_cache()
print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": out}))
`;
  try {
    const r = await new Deno.Command("python3", {
      args: ["-c", py],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (r.success) {
      const res = JSON.parse(
        new TextDecoder().decode(r.stdout).trim().split("\n").at(-1)!,
      );
      console.log(`torch ${res.torch} on ${res.device}`);
      torchRows.push(...res.rows);
    } else {
      console.log(
        `torch unavailable: ${
          new TextDecoder().decode(r.stderr).trim().split("\n").at(-1)
        }`,
      );
    }
  } catch (e) {
    console.log(`torch unavailable: ${(e as Error).message}`);
  }
}

// ---- Table ----------------------------------------------------------------------
const all = [...rows, ...torchRows];
console.log(
  "\n| optimizer | params | median ms/step | min ms/step | Gparam/s | state B/param |",
);
console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
for (const r of all) {
  console.log(
    `| ${r.optimizer} | 2^${Math.log2(r.params)} | ${r.medianMs.toFixed(3)} | ${
      r.minMs.toFixed(3)
    } | ${(r.params / r.medianMs / 1e6).toFixed(2)} | ${
      r.bytesPerParam.toFixed(3)
    } |`,
  );
}
if (values.json) {
  await Deno.writeTextFile(
    values.json,
    JSON.stringify({ info, golden, rows: all, profiles }, null, 1),
  );
}
device.destroy();
