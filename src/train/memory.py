"""Host memory of a CPU process: MindSpore's memory pool given one large block, and freed heap handed back to the
system between phases (docs/performance.md, Memory).

- The pool: on CPU, MindSpore reserves the memory of activations and graph outputs from blocks it mallocs: half of
  `init_size` for them (the other half for persistent tensors), then blocks of 1 GB (the CPU pool ignores
  `increase_size`). A block's pages become resident as tensors land on them. With the default 2 GB init (a 1 GB
  block) the demo retrieval step (1.57 GB in use at its peak) spread over two 1 GB blocks and touched 2.2 GB of them;
  with a 2 GB block it touches 1.6 GB. Pages never touched cost nothing but address space.
- The heap: graph compilation builds and frees hundreds of MB of IR in small blocks, which glibc keeps for the
  process; malloc_trim(0) hands their pages back after compiling and after a graph's first run. Blocks of 1 MB or
  more get mappings of their own (mallopt), which go back to the system as soon as they are freed.
"""
from __future__ import annotations

import ctypes
import ctypes.util

import mindspore as ms
import numpy as np

POOL_INIT = "4GB"  # a 2 GB block for activations (reserved as address space; resident only where used)


def one_pool_block() -> None:
    """Start the CPU memory pool with a POOL_INIT block (before the first graph runs; once a process: MindSpore
    refuses a second setting; no effect off CPU)."""
    global _pool_set
    if _pool_set or ms.get_context("device_target") != "CPU":
        return
    _pool_set = True
    large_blocks_mapped_apart()
    try:
        ms.runtime.set_memory(init_size=POOL_INIT)
    except RuntimeError:  # set already (by the caller), or the pool is in use: keep MindSpore's
        pass


_pool_set = False


def host_arrays(outputs) -> tuple:
    """A graph's outputs as numpy copies; the graph's tensors are dropped on return (src/infer/items.py, real_rows,
    does the same for inference). Kept alive during the graph's next call, they pin small blocks in the pool
    at addresses that alternate from call to call; the big blocks then no longer fit where they did, and after 9
    steps of the demo retrieval step the pool held 0.35 GB more (docs/performance.md, Memory)."""
    return tuple(np.array(o.asnumpy()) for o in outputs)


def drop_compiled_graphs() -> None:
    """Free every graph this process has compiled and the runtime memory cached for them (`ms.ms_memory_recycle`),
    then the freed heap: between phases that share no graph (the warm start's encoders and heads, then the train
    step)."""
    ms.ms_memory_recycle()
    release_freed_heap()


def large_blocks_mapped_apart() -> None:
    """Heap blocks of MMAP_THRESHOLD or more get a mapping of their own, returned to the system when freed. glibc's
    default threshold rises to the largest block freed so far (up to 32 MB): after graph compilation frees its large
    buffers, later ones land in the heap and leave holes among the compiled graph's small blocks."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD = 1 << 20


def release_freed_heap() -> None:
    """Return the pages of freed heap to the system (glibc's malloc_trim; nothing elsewhere)."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
