"""One compute context: how many threads torch and BLAS use, set for a block and restored after it.

Every place that limits threads goes through :func:`compute_context`
(extraction's torch threads, the morphospace's BLAS threads and working
memory, the single-threaded BLAS of small products in the probes, disparity
and patch PCA). On leaving the block, torch's thread count, the BLAS/OpenMP
pools (``threadpoolctl``) and scikit-learn's ``working_memory`` are what they
were before, so a notebook that calls the library keeps its own settings.

The one exception is :func:`limit_worker_blas`: a probe *worker process*
keeps one BLAS thread for its whole life (entering ``threadpool_limits``
costs some 4 ms, which over the ~900 tasks of the paper protocol added up).
"""

from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from typing import Iterator


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextmanager
def compute_context(*, blas: int | None = None, torch_threads: int | None = None,
                    working_memory_mb: int | None = None, blas_api: str | None = None) -> Iterator[None]:
    """Threads and memory settings for the block, restored on exit.

    blas : BLAS/OpenMP threads (None: leave as they are); ``blas_api="blas"`` limits
        only the BLAS pools (not OpenMP).
    torch_threads : torch intra-op threads (None: leave; ``-1``: every usable CPU).
    working_memory_mb : scikit-learn's ``working_memory`` (chunk size of pairwise
        computations) for the block.
    """
    with ExitStack() as stack:
        if working_memory_mb is not None:
            import sklearn

            stack.enter_context(sklearn.config_context(working_memory=int(working_memory_mb)))
        if blas is not None:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=int(blas), user_api=blas_api))
        if torch_threads is not None:
            import torch

            before = torch.get_num_threads()
            n = usable_cpus() if torch_threads == -1 else int(torch_threads)
            torch.set_num_threads(max(1, n))
            stack.callback(torch.set_num_threads, before)
        yield


def one_blas_thread(active: bool = True):
    """BLAS on one thread for the block (when ``active``): many small products are faster so,
    and much faster on a busy machine."""
    return compute_context(blas=1 if active else None, blas_api="blas")


_WORKER_LIMITED = False


def limit_worker_blas() -> None:
    """One BLAS/OpenMP thread for the rest of this worker process's life (probe workers only)."""
    global _WORKER_LIMITED
    if not _WORKER_LIMITED:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
        _WORKER_LIMITED = True


__all__ = ["compute_context", "one_blas_thread", "limit_worker_blas", "usable_cpus"]
