"""The Vulkan driver's report on compiled compute kernels (GPU machine only).

WebGPU reports no register counts; the driver does, through
VK_KHR_pipeline_executable_properties, for a SPIR-V module. This builds a
compute pipeline from each module that bench/spirv.ts wrote (its
manifest.txt says the group-0 binding kinds) and prints the driver's
statistics, one line per kernel. On the H200 (driver 580) they are Register
Count, Binary Size, Stack Size, Local Memory Size and Shared Memory Size; the
local memory value comes with bits above the low 32 set, printed as is and
as its low 32 bits (bytes per thread, matching the private arrays' sizes).

    python3 bench/vkstats.py DIR [--ir OUTDIR] [--cache OUTDIR]

--ir also saves the driver's internal representations, if it offers any
(NVIDIA's offered none). --cache builds each pipeline through a fresh
pipeline cache and writes the cache's contents to OUTDIR/<module>.cache
(e.g. microadamSelectFast.f32.spv.cache): NVIDIA's (~80 KB on the H200)
holds the compiled machine code, which bench/sass.ts extracts and
disassembles; lavapipe's is a few bytes of header. Without the extension
(e.g. llvmpipe) each module is only compiled, and --cache still writes the
blob. Uses ctypes and libvulkan.so.1, nothing else.
"""
import ctypes as C, sys, os

vk = C.CDLL("libvulkan.so.1")
P = C.c_void_p
U32 = C.c_uint32
U64 = C.c_uint64
vk.vkCreateInstance.argtypes = [P, P, P]
vk.vkEnumeratePhysicalDevices.argtypes = [P, P, P]
vk.vkCreateDevice.argtypes = [P, P, P, P]


class AppInfo(C.Structure):
    _fields_ = [("sType", U32), ("pNext", P), ("pApplicationName", C.c_char_p), ("applicationVersion", U32),
                ("pEngineName", C.c_char_p), ("engineVersion", U32), ("apiVersion", U32)]


class InstInfo(C.Structure):
    _fields_ = [("sType", U32), ("pNext", P), ("flags", U32), ("pApplicationInfo", P), ("enabledLayerCount", U32),
                ("ppEnabledLayerNames", P), ("enabledExtensionCount", U32), ("ppEnabledExtensionNames", P)]


class QInfo(C.Structure):
    _fields_ = [("sType", U32), ("pNext", P), ("flags", U32), ("queueFamilyIndex", U32), ("queueCount", U32),
                ("pQueuePriorities", P)]


class DevInfo(C.Structure):
    _fields_ = [("sType", U32), ("pNext", P), ("flags", U32), ("queueCreateInfoCount", U32), ("pQueueCreateInfos", P),
                ("enabledLayerCount", U32), ("ppEnabledLayerNames", P), ("enabledExtensionCount", U32),
                ("ppEnabledExtensionNames", P), ("pEnabledFeatures", P)]


class ExecFeat(C.Structure):
    _fields_ = [("sType", U32), ("pNext", P), ("pipelineExecutableInfo", U32)]


class SMInfo(C.Structure):
    _fields_ = [("sType", U32), ("pNext", P), ("flags", U32), ("codeSize", C.c_size_t), ("pCode", P)]


class DSLBinding(C.Structure):
    _fields_ = [("binding", U32), ("descriptorType", U32), ("descriptorCount", U32), ("stageFlags", U32),
                ("pImmutableSamplers", P)]


class DSLInfo(C.Structure):
    _fields_ = [("sType", U32), ("pNext", P), ("flags", U32), ("bindingCount", U32), ("pBindings", P)]


class PLInfo(C.Structure):
    _fields_ = [("sType", U32), ("pNext", P), ("flags", U32), ("setLayoutCount", U32), ("pSetLayouts", P),
                ("pushConstantRangeCount", U32), ("pPushConstantRanges", P)]


class StageInfo(C.Structure):
    _fields_ = [("sType", U32), ("pNext", P), ("flags", U32), ("stage", U32), ("module", U64), ("pName", C.c_char_p),
                ("pSpecializationInfo", P)]


class CPInfo(C.Structure):
    _fields_ = [("sType", U32), ("pNext", P), ("flags", U32), ("stage", StageInfo), ("layout", U64),
                ("basePipelineHandle", U64), ("basePipelineIndex", C.c_int32)]


class PipeInfo(C.Structure):
    _fields_ = [("sType", U32), ("pNext", P), ("pipeline", U64)]


class ExecProps(C.Structure):
    _fields_ = [("sType", U32), ("pNext", P), ("stages", U32), ("name", C.c_char * 256),
                ("description", C.c_char * 256), ("subgroupSize", U32)]


class ExecInfo(C.Structure):
    _fields_ = [("sType", U32), ("pNext", P), ("pipeline", U64), ("executableIndex", U32)]


class StatValue(C.Union):
    _fields_ = [("b32", U32), ("i64", C.c_int64), ("u64", U64), ("f64", C.c_double)]


class Stat(C.Structure):
    _fields_ = [("sType", U32), ("pNext", P), ("name", C.c_char * 256), ("description", C.c_char * 256),
                ("format", U32), ("value", StatValue)]


class PCInfo(C.Structure):  # VkPipelineCacheCreateInfo
    _fields_ = [("sType", U32), ("pNext", P), ("flags", U32), ("initialDataSize", C.c_size_t),
                ("pInitialData", P)]


class IR(C.Structure):
    _fields_ = [("sType", U32), ("pNext", P), ("name", C.c_char * 256), ("description", C.c_char * 256),
                ("isText", U32), ("dataSize", C.c_size_t), ("pData", P)]


def check(r, what):
    if r != 0:
        raise SystemExit(f"{what} failed: VkResult {r}")


def enumerate_into(fn, dev, info, struct, stype, what):
    """Vulkan's two-call query: the count, then that many `struct`s (sType set)."""
    count = U32(0)
    check(fn(dev, C.byref(info), C.byref(count), None), what + " count")
    items = (struct * count.value)()
    for item in items:
        item.sType = stype
    check(fn(dev, C.byref(info), C.byref(count), C.cast(items, P)), what)
    return items


def take_option(args, name):
    """The folder after `name` in `args` (both removed, the folder made), or None."""
    if name not in args:
        return None
    at = args.index(name)
    if at + 1 >= len(args):
        raise SystemExit(f"{name}: expected a folder after it, got nothing")
    folder = args[at + 1]
    del args[at:at + 2]
    os.makedirs(folder, exist_ok=True)
    return folder


def cache_data(dev, cache):
    """The pipeline cache's contents (Vulkan's two calls: the size, then the bytes)."""
    size = C.c_size_t(0)
    check(vk.vkGetPipelineCacheData(dev, cache, C.byref(size), None), "vkGetPipelineCacheData size")
    data = C.create_string_buffer(size.value)
    check(vk.vkGetPipelineCacheData(dev, cache, C.byref(size), data), "vkGetPipelineCacheData")
    return data.raw[: size.value]


def main():
    args = sys.argv[1:]
    ir_dir = take_option(args, "--ir")
    cache_dir = take_option(args, "--cache")
    if len(args) != 1:
        raise SystemExit("usage: python3 bench/vkstats.py DIR [--ir OUTDIR] [--cache OUTDIR]")
    folder = args[0]
    with open(os.path.join(folder, "manifest.txt")) as f:
        args = [os.path.join(folder, line.strip()) for line in f if line.strip()]
    app = AppInfo(0, None, b"vkstats", 1, b"none", 1, (1 << 22) | (3 << 12))
    ii = InstInfo(1, None, 0, C.cast(C.pointer(app), P), 0, None, 0, None)
    inst = P()
    check(vk.vkCreateInstance(C.byref(ii), None, C.byref(inst)), "vkCreateInstance")
    n = U32(0)
    vk.vkEnumeratePhysicalDevices(inst, C.byref(n), None)
    phys = (P * n.value)()
    vk.vkEnumeratePhysicalDevices(inst, C.byref(n), phys)
    pd = phys[0]
    prio = C.c_float(1.0)
    qi = QInfo(2, None, 0, 0, 1, C.cast(C.pointer(prio), P))
    feat = ExecFeat(1000269000, None, 1)
    ext = (C.c_char_p * 1)(b"VK_KHR_pipeline_executable_properties")
    di = DevInfo(3, C.cast(C.pointer(feat), P), 0, 1, C.cast(C.pointer(qi), P), 0, None, 1, C.cast(ext, P), None)
    dev = P()
    have = vk.vkCreateDevice(pd, C.byref(di), None, C.byref(dev)) == 0
    if not have:  # e.g. lavapipe: compile only
        print("vkstats | VK_KHR_pipeline_executable_properties missing: compile only")
        di = DevInfo(3, None, 0, 1, C.cast(C.pointer(qi), P), 0, None, 0, None, None)
        check(vk.vkCreateDevice(pd, C.byref(di), None, C.byref(dev)), "vkCreateDevice")
    gdpa = vk.vkGetDeviceProcAddr
    gdpa.restype = P
    gdpa.argtypes = [P, C.c_char_p]
    FN = C.CFUNCTYPE(C.c_int32, P, P, C.POINTER(U32), P)
    if have:
        get_props = FN(gdpa(dev, b"vkGetPipelineExecutablePropertiesKHR"))
        get_stats = FN(gdpa(dev, b"vkGetPipelineExecutableStatisticsKHR"))
        get_ir = FN(gdpa(dev, b"vkGetPipelineExecutableInternalRepresentationsKHR"))
    vk.vkCreateShaderModule.argtypes = [P, P, P, P]
    vk.vkCreateDescriptorSetLayout.argtypes = [P, P, P, P]
    vk.vkCreatePipelineLayout.argtypes = [P, P, P, P]
    vk.vkCreateComputePipelines.argtypes = [P, U64, U32, P, P, P]
    vk.vkCreatePipelineCache.argtypes = [P, P, P, P]
    vk.vkGetPipelineCacheData.argtypes = [P, U64, P, P]
    vk.vkDestroyPipelineCache.argtypes = [P, U64, P]
    for arg in args:
        path, binds = arg.rsplit(":", 1)
        code = open(path, "rb").read()
        buf = C.create_string_buffer(code, len(code))
        smi = SMInfo(16, None, 0, len(code), C.cast(buf, P))
        sm = U64()
        check(vk.vkCreateShaderModule(dev, C.byref(smi), None, C.byref(sm)), "vkCreateShaderModule")
        kinds = binds.split(",")
        arr = (DSLBinding * len(kinds))()
        for i, k in enumerate(kinds):
            arr[i] = DSLBinding(i, 6 if k == "u" else 7, 1, 0x20, None)
        dsli = DSLInfo(32, None, 0, len(kinds), C.cast(arr, P))
        dsl = U64()
        check(vk.vkCreateDescriptorSetLayout(dev, C.byref(dsli), None, C.byref(dsl)), "vkCreateDescriptorSetLayout")
        pli = PLInfo(30, None, 0, 1, C.cast(C.pointer(dsl), P), 0, None)
        pl = U64()
        check(vk.vkCreatePipelineLayout(dev, C.byref(pli), None, C.byref(pl)), "vkCreatePipelineLayout")
        st = StageInfo(18, None, 0, 0x20, sm.value, b"main", None)
        cpi = CPInfo(29, None, 0x40 | 0x80 if have else 0, st, pl.value, 0, -1)
        cache = U64(0)  # VK_NULL_HANDLE: no cache
        if cache_dir:
            # A fresh cache per module, so that its blob holds this module's code alone.
            pci = PCInfo(17, None, 0, 0, None)
            check(vk.vkCreatePipelineCache(dev, C.byref(pci), None, C.byref(cache)), "vkCreatePipelineCache")
        pipe = U64()
        check(vk.vkCreateComputePipelines(dev, cache.value, 1, C.byref(cpi), None, C.byref(pipe)),
              "vkCreateComputePipelines")
        if cache_dir:
            blob = cache_data(dev, cache.value)
            vk.vkDestroyPipelineCache(dev, cache.value, None)
            out = os.path.join(cache_dir, os.path.basename(path) + ".cache")
            with open(out, "wb") as f:
                f.write(blob)
            print(f"vkstats | {os.path.basename(path)} | cache {len(blob)} B -> {out}")
        if not have:
            print(f"vkstats | {os.path.basename(path)} | compiled")
            continue
        pinfo = PipeInfo(1000269001, None, pipe.value)
        props = enumerate_into(get_props, dev, pinfo, ExecProps, 1000269002, "props")
        for ei in range(len(props)):
            einfo = ExecInfo(1000269003, None, pipe.value, ei)
            stats = enumerate_into(get_stats, dev, einfo, Stat, 1000269004, "stats")
            vals = []
            for s in stats:
                v = [s.value.b32, s.value.i64, s.value.u64, s.value.f64][s.format]
                if s.format in (1, 2) and v >> 32:
                    v = f"{v & 0xFFFFFFFF} (raw {v:#x})"
                vals.append(f"{s.name.decode()}={v}")
            print(f"vkstats | {os.path.basename(path)} | subgroup {props[ei].subgroupSize} | " + ", ".join(vals))
            if ir_dir:
                ic = U32(0)
                r = get_ir(dev, C.byref(einfo), C.byref(ic), None)
                if r != 0 or ic.value == 0:
                    print(f"vkstats | {os.path.basename(path)} | no internal representations ({r})")
                    continue
                irs = (IR * ic.value)()
                for x in irs:
                    x.sType = 1000269005
                get_ir(dev, C.byref(einfo), C.byref(ic), C.cast(irs, P))
                bufs = []
                for x in irs:
                    b = C.create_string_buffer(x.dataSize)
                    bufs.append(b)
                    x.pData = C.cast(b, P)
                get_ir(dev, C.byref(einfo), C.byref(ic), C.cast(irs, P))
                for j, x in enumerate(irs):
                    name = x.name.decode().replace(" ", "_").replace("/", "_")
                    out = os.path.join(ir_dir, f"{os.path.basename(path)}.{j}.{name}" + (".txt" if x.isText else ".bin"))
                    with open(out, "wb") as f:
                        f.write(bufs[j].raw[: x.dataSize])
                    print(f"vkstats | {os.path.basename(path)} | IR {x.name.decode()} ({x.dataSize} B) -> {out}")


if __name__ == "__main__":
    main()
