"""Data-parallel training over MPI (mpi4py): for people who write their own loop, and what
``mpiexec -n N elman train`` uses.

    from elman import distributed as dist
    comm = dist.init()                                  # MPI.COMM_WORLD, wrapped
    lo, hi = dist.shard(B, comm.rank, comm.size)        # this rank's lanes of the batch
    ...
    loss, h = model.forward_backward(x[:, lo:hi], y[:, lo:hi], h)
    loss = comm.allreduce_grads(model, loss)            # mean gradient and loss of all ranks
    opt.step()                                          # the same update on every rank
    comm.check_in_sync(model)                           # every K steps: ranks never diverge

Synchronous: every rank computes the gradient of its shard of the global batch, one
Allreduce sums the flat gradient buffer (and the loss) and divides by the number of ranks,
and every rank applies the same optimizer update, so the parameters stay identical without
being sent. With "mean" losses over equal shards this is the gradient of the whole batch.

Every collective waits at most ``timeout`` seconds (``ELMAN_MPI_TIMEOUT``, default 300): a
rank that died or hung makes the others raise ``CollectiveTimeout`` with what they were
waiting for, and abort the job, instead of waiting forever. Waits for work that rank 0 does
alone (evaluation, writing a checkpoint) use ``root_timeout`` (``ELMAN_MPI_ROOT_TIMEOUT``,
default 3600). (MPICH's mpiexec also ends the job when a rank exits abnormally.)

All ranks must compute the same update from the same averaged gradient: run them with the
same thread count and kernel path (the gradient norm of clipping is a sum whose rounding
follows the thread split); ``check_in_sync`` reports it if they do not.

Install with ``pip install "elman[mpi]"`` (mpi4py and MPICH from the package index).
"""
from __future__ import annotations

import os
import sys
import time
import zlib

import numpy as np

__all__ = ["init", "Comm", "LocalComm", "shard", "launched_by_mpi", "CollectiveTimeout",
           "Divergence"]

DEFAULT_TIMEOUT = 300.0
DEFAULT_ROOT_TIMEOUT = 3600.0
ABORT_GRACE = 1.0  # seconds between reporting a timeout and aborting the job


class CollectiveTimeout(RuntimeError):
    """A collective did not complete within the timeout: a rank died or hung."""


class Divergence(RuntimeError):
    """The ranks' parameters differ: data-parallel training has gone wrong."""


def launched_by_mpi() -> bool:
    """True in a process started by mpiexec/mpirun with more than one rank (MPICH's PMI,
    Open MPI, Slurm's PMI2/PMIx variables), without importing MPI."""
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"):
        try:
            if int(os.environ.get(var, "1")) > 1:
                return True
        except ValueError:
            pass
    return False


def shard(n: int, rank: int, size: int) -> tuple:
    """This rank's half-open range [lo, hi) of n items cut into size equal parts. n must
    divide evenly: equal shards keep the averaged "mean" gradient the whole batch's."""
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"shard: rank {rank} is not in [0, {size})")
    if n % size:
        raise ValueError(f"the batch of {n} does not split evenly over {size} ranks; use a "
                         f"multiple of {size}")
    per = n // size
    return rank * per, (rank + 1) * per


def init(comm=None, *, timeout=None) -> "Comm":
    """The communicator to train over (MPI.COMM_WORLD by default), wrapped with the helpers
    below. Raises ImportError with the install command when mpi4py is missing."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ImportError('elman.distributed needs mpi4py and an MPI library: '
                          'pip install "elman[mpi]"') from err
    return Comm(MPI.COMM_WORLD if comm is None else comm, MPI, timeout)


class Comm:
    """An mpi4py communicator with the collectives of data-parallel training, each bounded
    by a timeout."""

    distributed = True  # the ranks agree on stopping and on a non-finite loss (see train)

    def __init__(self, comm, MPI, timeout=None, root_timeout=None):
        self.comm, self.MPI = comm, MPI
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        if timeout is None:
            timeout = float(os.environ.get("ELMAN_MPI_TIMEOUT", DEFAULT_TIMEOUT))
        if root_timeout is None:
            root_timeout = float(os.environ.get("ELMAN_MPI_ROOT_TIMEOUT",
                                                max(DEFAULT_ROOT_TIMEOUT, timeout)))
        if not (timeout > 0 and root_timeout > 0):
            raise ValueError(f"timeouts must be > 0 seconds, got {timeout}, {root_timeout}")
        self.timeout, self.root_timeout = timeout, root_timeout
        self._scalars = np.zeros(4, np.float64)
        self._local_size = None

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def local_size(self) -> int:
        """How many of the ranks share this rank's node (its shared-memory group): they
        share its cores. Collective on the first call (every rank must make it), cached."""
        if self._local_size is None:
            if self.size == 1:
                self._local_size = 1
            else:
                node = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)
                try:
                    self._local_size = node.Get_size()
                finally:
                    node.Free()
        return self._local_size

    def _wait(self, request, what, timeout=None):
        """Wait for a nonblocking collective, at most ``timeout`` (self.timeout) seconds; on
        a timeout report, abort the job (the other ranks may be blocked in it too) and
        raise."""
        if request.Test():
            return
        limit = self.timeout if timeout is None else timeout
        start = time.monotonic()
        pause = 1e-5
        while not request.Test():
            if time.monotonic() - start > limit:
                message = (f"rank {self.rank} of {self.size}: {what} did not complete within "
                           f"{limit:g} s; a rank has died or hung (ELMAN_MPI_TIMEOUT and "
                           f"ELMAN_MPI_ROOT_TIMEOUT set the limits)")
                print(message, flush=True)
                sys.stderr.flush()
                # MPI_Abort makes the launcher kill every process at once, and what a
                # rank wrote may still sit in the pipe to its proxy and be dropped: give
                # the launcher a moment to forward the message before aborting.
                time.sleep(ABORT_GRACE)
                try:
                    self.comm.Abort(70)
                finally:
                    raise CollectiveTimeout(message)
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)

    def allreduce_(self, buf, what="allreduce", *, mean=False):
        """Sum (or average) a float array across the ranks, in place."""
        if not (isinstance(buf, np.ndarray) and buf.flags.c_contiguous and buf.dtype.kind == "f"):
            raise TypeError("allreduce_: needs a C-contiguous float array")
        if self.size > 1:
            self._wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM), what)
        if mean and self.size > 1:
            buf /= buf.dtype.type(self.size)
        return buf

    def allreduce_scalars(self, *values, what="allreduce"):
        """Sums of a few floats across the ranks (one small Allreduce)."""
        buf = np.zeros(len(values), np.float64)
        buf[:] = values
        return tuple(float(v) for v in self.allreduce_(buf, what))

    def allreduce_grads(self, model, loss=None):
        """Average the model's flat gradient buffer over the ranks (one Allreduce, in place)
        and return the average of ``loss`` (None if not given)."""
        self.allreduce_(model.grads, "the gradient allreduce", mean=True)
        if loss is None:
            return None
        return self.allreduce_scalars(loss, what="the loss allreduce")[0] / self.size

    def gather_rows(self, local, what="gather"):
        """Rank-ordered concatenation along axis 1 of every rank's (S, b, H) array, on the
        root (None elsewhere): the hidden states of the lanes, for a checkpoint."""
        local = np.ascontiguousarray(local)
        if self.size == 1:
            return local
        out = None
        if self.is_root:
            out = np.empty((self.size,) + local.shape, local.dtype)
        self._wait(self.comm.Igather(local, out, root=0), what)
        if not self.is_root:
            return None
        return np.concatenate(list(out), axis=1)

    def checksum(self, array) -> int:
        return zlib.crc32(np.ascontiguousarray(array).view(np.uint8))

    def check_in_sync(self, model, what="parameters"):
        """Raise Divergence on every rank when the ranks' parameters are not bit-identical
        (compared by a CRC-32 of the buffer, gathered from every rank)."""
        mine = self.checksum(model.params)
        buf = np.zeros(self.size, np.float64)
        buf[self.rank] = mine
        self.allreduce_(buf, "the parameter checksum")
        if len(set(buf.tolist())) > 1:
            raise Divergence(f"rank {self.rank}: the ranks' {what} differ (CRC-32 per rank: "
                             f"{[int(v) for v in buf]}); data-parallel training is out of "
                             f"step")

    def barrier(self, what="barrier", timeout=None):
        if self.size > 1:
            self._wait(self.comm.Ibarrier(), what, timeout)


class LocalComm:
    """One process alone, behind Comm's interface: the collectives of data-parallel
    training on one rank (a sum of one, a gather of one, no barrier to wait at), so that
    the training loop reads the same with MPI and without."""

    distributed = False
    rank, size, is_root = 0, 1, True
    timeout = root_timeout = float("inf")

    def local_size(self) -> int:
        return 1

    def allreduce_scalars(self, *values, what="allreduce"):
        return tuple(float(v) for v in values)

    def allreduce_grads(self, model, loss=None):
        return loss

    def gather_rows(self, local, what="gather"):
        return local

    def check_in_sync(self, model, what="parameters"):
        pass

    def barrier(self, what="barrier", timeout=None):
        pass
