"""What a measurement ran on, and how much memory it took."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimd", "asimddp")
PACKAGES = ("edgelm", "onnxruntime", "onnxruntime-gpu", "tokenizers", "numpy", "torch",
            "transformers")


def _status_mb(key: str) -> float | None:
    """A memory line of /proc/self/status (Linux), in MB."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024
    return None


def rss_mb() -> float:
    """This process's resident memory now (VmRSS); NaN where /proc is not there."""
    now = _status_mb("VmRSS")
    return float("nan") if now is None else now


def peak_rss_mb() -> float:
    """This process's high-water resident memory (VmHWM; ru_maxrss survives exec)."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    import resource  # not Linux: ru_maxrss (KiB on most, bytes on macOS)

    scale = 1 / 1024 / 1024 if platform.system() == "Darwin" else 1 / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def gpu() -> str | None:
    """The NVIDIA GPU's name, driver and memory, when nvidia-smi is there."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                               "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[0] if lines else None


def amd_core(family: int | None, flags: set[str]) -> str | None:
    """AMD's core generation from the CPU family (virtual machines often name the CPU only
    "AMD EPYC"): Zen 4's AVX-512 runs on 256-bit units, Zen 5's on full-width ones, so
    their int8 figures differ though their flags nearly match."""
    if family == 26:
        return "Zen 5"
    if family == 25:
        return "Zen 4" if "avx512f" in flags else "Zen 3"
    if family == 23:
        return "Zen 2" if "rdpid" in flags else "Zen"
    return None


def hardware() -> dict[str, Any]:
    """CPU model (with AMD's core generation), SIMD flags, cores, GPU and package versions."""
    cpu, flags, family = platform.processor() or "unknown", set[str](), None
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model") and cpu in ("unknown", "", platform.machine()):
                cpu = value.strip()
            if key in ("flags", "Features") and not flags:
                flags = set(value.split())
            if key == "cpu family" and family is None and value.strip().isdigit():
                family = int(value)
    core = amd_core(family, flags) if "AMD" in cpu else None
    if core and core not in cpu:
        cpu = f"{cpu} ({core})"
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {"cpu": cpu, "simd": [f for f in SIMD_FLAGS if f in flags], "cores": os.cpu_count(),
            "machine": platform.machine(), "python": platform.python_version(), "gpu": gpu(),
            "versions": versions}
