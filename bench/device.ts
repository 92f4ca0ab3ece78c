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
  type GpuOptimizer,
  MicroAdam,
  requestDevice,
} from "../mod.ts";
import { loadGoldenCases, splitStep } from "../tests/golden.ts";
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
  const opt = new MicroAdam(device, tensors, {
    dtype: "bf16",
    lr: cfg.lr,
    betas: cfg.betas,
    eps: cfg.eps,
    weightDecay: cfg.weight_decay,
    window: cfg.m,
    density: cfg.density,
    topkBlockSize: cfg.topk_block_size,
    efBlockSize: cfg.quant_block_size,
  });
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

type Row = {
  optimizer: string;
  params: number;
  medianMs: number;
  minMs: number;
  bytesPerParam: number;
};
const rows: Row[] = [];
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
    JSON.stringify({ info, golden, rows: all }, null, 1),
  );
}
device.destroy();
