# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""What this CPU's vector units do natively: bf16 products, int8 dot products.

The precision a CPU-only robot should run in depends on them: bf16 is fast only with
AVX512-BF16 or AMX, and onnxruntime's int8 products add in int32 only with VNNI or AMX.
"""
import platform
from typing import Iterable, Optional

import torch

# x86 flags of int8 dot products that add in int32 (VNNI, AVX-VNNI, AMX-INT8).
INT32_DOT_FLAGS = frozenset({'avx512_vnni', 'avx_vnni', 'amx_int8'})
_X86 = ('x86_64', 'amd64', 'i386', 'i686', 'x86')


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX), so bf16 is faster."""
    checks = ('_is_avx512_bf16_supported', '_is_amx_tile_supported')
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def int8_products_saturate(flags: Optional[Iterable[str]] = None,
                           machine: Optional[str] = None) -> bool:
    """Whether onnxruntime's int8 products can saturate here (x86 without VNNI).

    Without VNNI, onnxruntime's x86 kernels multiply uint8 activations by int8 weights with
    ``vpmaddubsw``, which adds each pair of products in int16 and clips at 32767, so two
    ordinary products with full-range weights overflow it. VNNI, AMX and Arm's dot
    products add in int32.

    Args:
        flags: the CPU's feature flags (default: /proc/cpuinfo's).
        machine: the architecture name (default: ``platform.machine()``).
    """
    if (machine or platform.machine()).lower() not in _X86:
        return False
    if flags is None:
        flags = cpu_flags()
        if flags is None:  # no /proc/cpuinfo: PyTorch's cpuinfo knows AVX512-VNNI only
            return not getattr(torch.cpu, '_is_vnni_supported', lambda: False)()
    return not INT32_DOT_FLAGS & set(flags)


def cpu_flags() -> Optional[frozenset]:
    """Return the feature flags of /proc/cpuinfo, or None where there is none."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as info:
            for line in info:
                if line.startswith('flags'):
                    return frozenset(line.split(':', 1)[1].split())
    except OSError:
        pass
    return None


def describe() -> str:
    """One line for logs and the benchmark: what bf16 and int8 run on here."""
    bf16 = 'native' if native_bf16() else 'not native (fp32 is faster)'
    int8 = ('int16 pair sums, no VNNI (int8 graphs use 7-bit weights)'
            if int8_products_saturate() else 'int32 dot products')
    return f'bf16 {bf16}; int8 {int8}'
