"""PyTorch's fused AdamW on the same GPU, timed as bench/device.ts times this
project: CUDA events around N optimizer steps submitted back to back, gradients
rotated between several sets where the tensors would fit the L2 cache, and
realistic data (random nonzero parameters, gradients spread over 12 octaves).
Also measures the device-to-device copy bandwidth. Run by bench/device.ts:

    python3 bench/torch_adamw.py '{"sizes": [16777216], "shapes": {...}, "steps": 50}'

Prints one JSON object per line: {"copy": ...} and then one row per run.
"""

import json
import time
import sys

import torch


def grads_like(p):
    g = torch.randn_like(p, dtype=torch.float32)
    g = g.sign() * 1e-2 * torch.exp2(-torch.randint(0, 12, p.shape, device=p.device).float()) * (
        1 + torch.rand_like(g)
    )
    return g.to(p.dtype)


def copy_bandwidth(n, reps=20):
    a = torch.randn(n, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(reps):
        b.copy_(a)
    e.record()
    e.synchronize()
    ms = s.elapsed_time(e) / reps
    del a, b
    torch.cuda.empty_cache()
    return {"bytes": 8 * n, "ms": ms, "tbps": 8 * n / ms / 1e9}


def run(label, shapes, dtype, steps, sets, warmup_ms):
    """Times fused AdamW over `shapes` (a list of tensor shapes), `sets` copies."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    params = 0
    opts = []
    try:
        for _ in range(sets):
            ps = []
            for shape in shapes:
                p = (torch.rand(shape, device="cuda") * 1.98 - 0.99).to(dtype)
                p.grad = grads_like(p)
                ps.append(p)
            opts.append(torch.optim.AdamW(ps, lr=1e-4, weight_decay=0.01, fused=True))
            params = sum(p.numel() for p in ps)
        # Warm-up: at least 3 steps per set and warmup_ms of steps, as
        # bench/device.ts does (the SM clock needs about 2 s of load to come
        # back up after host-bound work).
        start = time.perf_counter()
        while True:
            for i in range(3 * sets):
                opts[i % sets].step()
            torch.cuda.synchronize()
            if (time.perf_counter() - start) * 1e3 >= warmup_ms:
                break
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for i in range(steps):
            opts[i % sets].step()
        e.record()
        e.synchronize()
        ms = s.elapsed_time(e) / steps
        row = {"label": label, "dtype": str(dtype).replace("torch.", ""), "params": params, "ms": ms,
               "peakGiB": torch.cuda.max_memory_allocated() / 2**30}
    except torch.cuda.OutOfMemoryError as err:
        row = {"label": label, "dtype": str(dtype).replace("torch.", ""), "params": params or None,
               "oom": True, "peakGiB": torch.cuda.max_memory_allocated() / 2**30,
               "error": str(err).split("\n")[0][:200]}
    del opts
    torch.cuda.empty_cache()
    return row


def main():
    cfg = json.loads(sys.argv[1])
    steps = cfg["steps"]
    warmup_ms = cfg.get("warmupMs", 1800)
    print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__}), flush=True)
    print(json.dumps({"copy": copy_bandwidth(cfg.get("copyElements", 2**28))}), flush=True)
    for dtype in (torch.float32, torch.bfloat16):
        for n in cfg.get("sizes", []):
            sets = 4 if n * 16 <= 2**30 else 1
            print(json.dumps(run(f"2^{n.bit_length() - 1}", [[n]], dtype, steps, sets, warmup_ms)), flush=True)
        for name, shapes in cfg.get("shapes", {}).items():
            print(json.dumps(run(name, shapes, dtype, steps, 1, warmup_ms)), flush=True)


if __name__ == "__main__":
    main()
