"""Host memory of a CPU process: MindSpore's memory pool grown in small steps, and freed heap handed back to the system
between phases (docs/performance.md, Memory).

- The pool: on CPU, MindSpore reserves the memory of graph outputs and activations in blocks of 1 GB by default. A
  block's pages become resident as tensors land on them, and after a step the next one's tensors land elsewhere in
  the block: the demo retrieval step grew by 0.9 GB between its first and second step. Blocks of POOL_STEP keep the
  resident memory near what a step uses.
- The heap: graph compilation builds and frees hundreds of MB of IR in small blocks, which glibc keeps for the
  process; malloc_trim(0) hands their pages back (0.3 GB after compiling the demo retrieval step).
"""
from __future__ import annotations

import ctypes
import ctypes.util

import mindspore as ms

POOL_STEP = "0.25GB"


def small_pool_steps() -> None:
    """Grow the CPU memory pool POOL_STEP at a time (before the first graph runs; once a process: MindSpore refuses a
    second setting; no effect off CPU)."""
    global _pool_set
    if _pool_set or ms.get_context("device_target") != "CPU":
        return
    _pool_set = True
    try:
        ms.runtime.set_memory(init_size=POOL_STEP, increase_size=POOL_STEP)
    except RuntimeError:  # set already (by the caller), or the pool is in use: keep MindSpore's
        pass


_pool_set = False


def drop_compiled_graphs() -> None:
    """Free every graph this process has compiled and the runtime memory cached for them (`ms.ms_memory_recycle`),
    then the freed heap: between phases that share no graph (the warm start's encoders and heads, then the train
    step)."""
    ms.ms_memory_recycle()
    release_freed_heap()


def release_freed_heap() -> None:
    """Return the pages of freed heap to the system (glibc's malloc_trim; nothing elsewhere)."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
