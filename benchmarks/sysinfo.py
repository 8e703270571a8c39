"""What a benchmark ran on: CPU, cores, memory, OS, Python and engine versions, and the board's own
state on a Jetson (model, L4T/JetPack, power mode) or a Raspberry Pi (model, temperature,
throttling), where the system exposes them. Reads files and asks tools; never fails a benchmark."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

ENGINES = ("numpy", "onnxruntime", "onnxruntime-gpu", "ai-edge-litert", "tflite-runtime", "executorch", "torch",
           "coremltools", "openvino")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text("utf-8", errors="replace").strip("\x00\n ")
    except OSError:
        return None


def _run(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Hardware", "Model"):
        for line in text.splitlines():
            if line.startswith(key) and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# The instructions that decide int8 and bf16 speed. A VM often masks the model name ("AMD EPYC"), and
# the same name covers Zen 4 (512-bit ops in two halves) and Zen 5 (full width): int8 ran 2x slower
# on the former here at a similar fp32 speed, so results carry family/model and these flags.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16",  # x86
               "asimddp", "i8mm", "asimdhp", "bf16", "sve", "sve2")  # arm64 (/proc/cpuinfo "Features")


def cpu_features(cpuinfo: str | None = None) -> dict[str, Any]:
    """Vendor, family/model (x86) or implementer/part (arm64), and which of `SPEED_FLAGS` the CPU has."""
    text = _read("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    fields: dict[str, str] = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    found = set((fields.get("flags") or fields.get("Features") or "").split())
    ids = {"vendor": fields.get("vendor_id"), "family": fields.get("cpu family"), "model": fields.get("model"),
           "implementer": fields.get("CPU implementer"), "part": fields.get("CPU part")}
    return {**{k: v for k, v in ids.items() if v}, "flags": [f for f in SPEED_FLAGS if f in found]}


def physical_cores() -> int | None:
    text = _read("/proc/cpuinfo") or ""
    pairs = set()
    phys = core = None
    for line in [*text.splitlines(), ""]:
        if line.startswith("physical id"):
            phys = line.split(":", 1)[1].strip()
        elif line.startswith("core id"):
            core = line.split(":", 1)[1].strip()
        elif not line.strip():
            if core is not None:
                pairs.add((phys, core))
            phys = core = None
    return len(pairs) or None


def memory_gib() -> float | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return None


def l4t_version(nv_tegra_release: str) -> str | None:
    """'# R36 (release), REVISION: 4.3, GCID: ...' (/etc/nv_tegra_release) -> '36.4.3'."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", nv_tegra_release)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def power_mode(nvpmodel_q: str) -> str | None:
    """`nvpmodel -q` ('NV Power Mode: MAXN_SUPER' then the mode id) -> 'MAXN_SUPER (mode 2)'."""
    lines = [line.strip() for line in nvpmodel_q.splitlines() if line.strip()]
    name = next((line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("nv power mode")), None)
    ident = next((line for line in lines if line.isdigit()), None)
    if name is None:
        return lines[0] if lines else None
    return f"{name} (mode {ident})" if ident is not None else name


# `vcgencmd get_throttled` bits (Raspberry Pi documentation): what limits the clock now / since boot.
THROTTLE_BITS = {0: "under-voltage now", 1: "frequency capped now", 2: "throttled now", 3: "soft temperature limit now",
                 16: "under-voltage since boot", 17: "frequency capped since boot", 18: "throttled since boot",
                 19: "soft temperature limit since boot"}


def throttling(get_throttled: str) -> list[str] | None:
    """'throttled=0x50005' -> the conditions it flags ([] = never throttled); None if unreadable."""
    try:
        value = int(get_throttled.split("=", 1)[-1].strip(), 16)
    except ValueError:
        return None
    return [text for bit, text in THROTTLE_BITS.items() if value >> bit & 1]


def board() -> dict[str, Any]:
    """Jetson / Raspberry Pi specifics (empty elsewhere)."""
    model = _read("/proc/device-tree/model")
    info: dict[str, Any] = {}
    tegra = _read("/etc/nv_tegra_release")
    if tegra or (model and "jetson" in model.lower()):
        info["kind"] = "jetson"
        info["model"] = model
        info["l4t"] = (l4t_version(tegra) or tegra.splitlines()[0]) if tegra else None
        info["jetpack"] = _run(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"])
        mode = _run(["nvpmodel", "-q"])
        info["power_mode"] = power_mode(mode) if mode else None
    elif model and "raspberry pi" in model.lower():
        info["kind"] = "raspberry-pi"
        info["model"] = model
        throttled = _run(["vcgencmd", "get_throttled"])
        info["throttled"] = throttled.split("=", 1)[-1] if throttled else None  # 0x0: never throttled
        info["throttling"] = throttling(throttled) if throttled else None
    temp = _read("/sys/class/thermal/thermal_zone0/temp")
    if info and temp and temp.lstrip("-").isdigit():
        info["temperature_c"] = int(temp) / 1000
    return info


def gpus() -> list[dict[str, str]]:
    out = _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"])
    if not out:
        return []
    rows = []
    for line in out.splitlines():
        name, mem, driver = (part.strip() for part in ([*line.split(","), "", ""])[:3])
        rows.append({"name": name, "memory": mem, "driver": driver})
    return rows


def versions() -> dict[str, str]:
    found = {}
    for name in ENGINES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def system_info() -> dict[str, Any]:
    return {"cpu": cpu_model(), "cpu_features": cpu_features(), "logical_cores": os.cpu_count(),
            "physical_cores": physical_cores(),
            "memory_gib": memory_gib(), "os": f"{platform.system()} {platform.release()}",
            "machine": platform.machine(), "python": platform.python_version(), "versions": versions(),
            "board": board(), "gpus": gpus()}


def describe(info: dict[str, Any]) -> str:
    """One line for tables and plots."""
    feats = info.get("cpu_features") or {}
    ident = (f"family {feats['family']} model {feats['model']}" if feats.get("family")
             else f"part {feats['part']}" if feats.get("part") else "")
    cpu = " ".join(p for p in (info.get("cpu") or "?", f"({ident})" if ident else "",
                               "+".join(feats.get("flags") or ())) if p)
    parts = [cpu, f"{info.get('logical_cores')} threads", f"{info.get('memory_gib')} GiB",
             info.get("os") or ""]
    b = info.get("board") or {}
    if b.get("model"):
        parts.insert(0, b["model"])
    if b.get("power_mode"):
        parts.append(f"power {b['power_mode']}")
    if b.get("l4t"):
        parts.append(f"L4T {b['l4t']}" + (f" (JetPack {b['jetpack']})" if b.get("jetpack") else ""))
    end = info.get("board_end") or {}  # read again after the rounds: heat and throttling build up
    if b.get("temperature_c") is not None:
        after = end.get("temperature_c")
        parts.append(f"{b['temperature_c']:.0f}" + (f"→{after:.0f}" if after is not None else "") + " °C")
    flags = list(dict.fromkeys([*(b.get("throttling") or []), *(end.get("throttling") or [])]))
    if flags:  # a throttled Pi's latencies are not its steady speed: say so beside them
        parts.append("THROTTLING: " + ", ".join(flags))
    if info.get("gpus"):
        parts.append(", ".join(g["name"] for g in info["gpus"]))
    return ", ".join(p for p in parts if p)
