"""Device, thread and memory-format choices for running the U-Net with torch.

Measured on the 2-core CPU machine (see DESIGN.md): fp32 with ``channels_last_3d`` is ~1.4x
faster than the default layout for 3D convolutions; bf16 is ~300x slower (no native bf16), so
the CPU path is always fp32. On CUDA, cuDNN autotuning and TF32 matmuls are enabled.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor

import torch

from pipeline.errors import InvalidInputError


def choose_device(device: str = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else CPU; otherwise the named device (checked)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as exc:
        raise InvalidInputError(f"unknown torch device {device!r}: {exc}")
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device {device!r} requested but CUDA is not available")
    return chosen


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads (default: all cores) and return the number set."""
    threads = num_threads if num_threads and num_threads > 0 else (os.cpu_count() or 1)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def configure_backends(device: torch.device) -> None:
    """Per-device backend flags: cuDNN autotune and TF32 on CUDA (fixed-size blocks)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def memory_format(device: torch.device, spatial_dims: int) -> torch.memory_format:
    """The layout convolutions run fastest in: channels-last on CPU, default on CUDA fp32."""
    if device.type == "cpu":
        return torch.channels_last_3d if spatial_dims == 3 else torch.channels_last
    return torch.contiguous_format


def to_memory_format(
    module: torch.nn.Module, fmt: torch.memory_format, device: torch.device | None = None
) -> torch.nn.Module:
    """Move a module's parameters to ``device`` (if given) in layout ``fmt``."""
    # Module.to accepts memory_format at run time; torch's stubs do not list it.
    return module.to(device=device, memory_format=fmt)  # type: ignore[call-overload,no-any-return]


def compile_for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile`` with inductor weight freezing; the first call costs 10-40 s of compilation.

    On the 2-core bench machine it was no faster than eager channels-last (bench/README.md:
    203 vs 216 GFLOP/s at 256^3), so it is off by default; a GPU or a larger CPU may differ."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    return torch.compile(model)  # type: ignore[return-value]


def inference_process_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool safe for torch: workers come from a fork server, not from a fork of a
    parent whose OpenMP thread pool is running (such children hang in their first parallel op)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("forkserver"))


def is_forking_pool(executor: object) -> bool:
    """Whether ``executor`` is a process pool that starts workers by plain ``fork``."""
    if not isinstance(executor, ProcessPoolExecutor):
        return False
    context = getattr(executor, "_mp_context", None)
    method = context.get_start_method() if context is not None else mp.get_start_method()
    return method == "fork"
