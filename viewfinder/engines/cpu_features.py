"""What this CPU offers for int8 inference, read at run time (machines differ from day to day).

ONNX Runtime's int8 convolutions (MLAS, u8 activations x s8 weights) beat fp32 clearly only
with 8-bit dot-product instructions: x86 AVX512-VNNI or AVX-VNNI, or AMX. Without them
(plain AVX2) the products go through VPMADDUBSW, which can saturate and measured slower than
fp32 on the detector (docs/performance.md). ``precision="auto"`` asks :func:`int8_dot_product`.
"""
from __future__ import annotations

import functools
import platform
from pathlib import Path

#: /proc/cpuinfo flags that give fast int8 products, best first
INT8_DOT_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
CPUINFO = Path("/proc/cpuinfo")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[frozenset[str], str]:
    """(flags, model name) of the first CPU listed; the machine's name and no flags off Linux."""
    found: dict[str, str] = {}
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:  # no /proc: no flags, so "auto" stays fp32
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        key = "flags" if key == "features" else key  # ARM spells it "Features"
        if key in ("flags", "model name"):
            found.setdefault(key, value.strip())
    model = found.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    return frozenset(found.get("flags", "").split()), model


def cpu_flags() -> frozenset[str]:
    """The first CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    return _cpuinfo()[0]


def cpu_model() -> str:
    return _cpuinfo()[1]


def int8_dot_product() -> str | None:
    """The flag that makes int8 inference pay here (``amx_int8``, ``avx512_vnni``, ``avx_vnni``), or None."""
    flags = cpu_flags()
    return next((flag for flag in INT8_DOT_FLAGS if flag in flags), None)


def int8_kernel_class() -> str:
    """Which int8 kernels ONNX Runtime runs here; int8 validation results are kept per class
    (without VNNI, u8s8 products may saturate, so a model validated on a VNNI CPU is checked again)."""
    found = int8_dot_product()
    if found:
        return "amx" if found == "amx_int8" else "vnni"
    return "avx2" if "avx2" in cpu_flags() else platform.machine().lower() or "other"


#: /proc/cpuinfo flags for native bfloat16 arithmetic (OpenVINO's bf16 kernels), best first
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def bf16_arithmetic() -> str | None:
    """The flag that makes bf16 inference pay here (``amx_bf16``, ``avx512_bf16``), or None.
    Without one, OpenVINO would emulate bf16 or quietly compute in fp32."""
    flags = cpu_flags()
    return next((flag for flag in BF16_FLAGS if flag in flags), None)


def bf16_kernel_class() -> str:
    """Which bf16 kernels run here; bf16 check results are kept per class (AMX and AVX512-BF16
    round and accumulate differently)."""
    return {"amx_bf16": "amx", "avx512_bf16": "avx512bf16"}.get(bf16_arithmetic() or "", "none")


def describe() -> str:
    """One line for benchmark headers: the CPU model, its int8 dot-product and bf16 support."""
    found = int8_dot_product()
    return (f"{cpu_model()}; int8 dot product: {found or 'none (no VNNI/AMX)'}; "
            f"bf16: {bf16_arithmetic() or 'none (no AVX512-BF16/AMX)'}")
