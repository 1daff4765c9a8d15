"""Where ``edgehmr bench`` runs its tasks: one interface, three homes.

- :class:`InProcess` (the default): each task runs when it is submitted, in this process.
- :class:`ProcessPool` (``--jobs N``): N worker processes of this machine.
- :class:`RayCluster` (``--cluster ADDRESS`` or ``auto``): Ray tasks placed by resource. A reference task needs a
  node with ``reference`` (the CUDA host), a conversion one with ``build``, a validate/profile task the
  ``device:<name>`` of its device. A task whose node dies is run again on another node with the same resource
  (Ray's retries of system failures); the task functions return their own failures, so those are never retried.

The driver (:mod:`edgehmr.matrix`) submits, waits for whichever finishes first and submits what that unblocks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from edgehmr.errors import InputError, TargetUnavailableError

RETRIES = 3  # runs of a task whose worker or node was lost, after the first
RAY_INSTALL = "pip install 'edgehmr[cluster]' (Ray) on this machine and every node"


@dataclass(frozen=True)
class Needs:
    """What a task needs from the machine it runs on."""
    resource: str  # reference | build | device:<name>
    exclusive: bool = False  # profiling: no other task on the node's cores meanwhile


class InProcess:
    name = "this process"
    store_is_local = True  # tasks can write straight into the driver's folders
    shares_cores = True  # device tasks run on the machine that converts

    def check(self, needs: set[Needs]) -> None:
        """Every task runs on this machine, which is the device 'local' and no other."""
        others = sorted(n.resource.split(":", 1)[1] for n in needs
                        if n.resource.startswith("device:") and n.resource != "device:local")
        if others:
            raise InputError(f"--devices {', '.join(others)}: without --cluster every cell runs on this machine "
                             f"('local'); join those devices to a Ray cluster (docs/cluster.md) and pass --cluster.")

    def submit(self, fn: Callable, args: tuple, needs: Needs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as e:  # noqa: BLE001  (the driver re-raises it through result())
            future.set_exception(e)
        return future

    def wait(self, handles: list) -> list:
        return [h for h in handles if h.done()] or handles[:1]

    def result(self, handle):
        return handle.result()

    def close(self) -> None:
        pass


class ProcessPool(InProcess):
    store_is_local = True

    def __init__(self, jobs: int):
        import multiprocessing

        self.name = f"{jobs} local processes"
        # spawn: a forked copy of a process that has loaded PyTorch's thread pools can hang
        self._start = lambda: ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
        self.pool = self._start()
        self.running: list[Future] = []

    def _submit(self, fn: Callable, args: tuple) -> Future:
        try:
            return self.pool.submit(fn, *args)
        except BrokenProcessPool:  # a worker died (a vendor tool aborting): its tasks failed, the next ones go on
            self.pool = self._start()
            return self.pool.submit(fn, *args)

    def submit(self, fn: Callable, args: tuple, needs: Needs) -> Future:
        self.running = [f for f in self.running if not f.done()]
        if not needs.exclusive:
            self.running.append(self._submit(fn, args))
            return self.running[-1]
        # profiling: what runs ends first, and nothing starts beside it (the driver waits here meanwhile)
        wait_futures(self.running)
        future = self._submit(fn, args)
        wait_futures([future])
        return future

    def wait(self, handles: list) -> list:
        done, _ = wait_futures(handles, return_when=FIRST_COMPLETED)
        return [h for h in handles if h in done]

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class RayCluster:
    """A Ray cluster: ``auto`` starts one on this machine (every resource on this node, ``device:local`` for
    validate/profile), anything else is the address of a running head (``ray start --head``)."""

    store_is_local = False
    shares_cores = False  # devices are their own nodes (a node that both builds and profiles still gets its cores)

    def __init__(self, address: str):
        try:
            import ray
        except ImportError:
            raise TargetUnavailableError(f"--cluster needs Ray: {RAY_INSTALL}.") from None
        self.ray = ray
        if address == "auto":
            cores = os.cpu_count() or 1
            # Ray lowers its workers' priority (nice 15) by default; here they are the work, not a background job
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(num_cpus=cores, resources={"reference": 1, "build": cores, "device:local": 1},
                     include_dashboard=False, log_to_driver=False, configure_logging=False)
            self.name = f"a local Ray cluster ({cores} cores)"
            self.store_is_local = True  # one machine: tasks write into the output folder, nothing travels as bytes
            self.shares_cores = True
        else:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise InputError(f"cannot join the Ray cluster at {address} ({e}); start its head with "
                                 f"'ray start --head' and pass its address (host:6379), or --cluster auto.") from None
            self.name = f"the Ray cluster at {address}"
        self._remote: dict[Callable, object] = {}

    def check(self, needs: set[Needs]) -> None:
        """Refuse a matrix that needs a resource no node has: Ray would wait for such a node forever."""
        have = self.ray.cluster_resources()
        missing = sorted({n.resource for n in needs} - set(have))
        if missing:
            lines = ", ".join(f"'{m}'" for m in missing)
            raise InputError(f"no node of {self.name} offers {lines}; join one with "
                             f"ray start --address=HEAD:6379 --resources='{{\"{missing[0]}\": 1}}' "
                             f"(docs/cluster.md), or choose other --devices.")

    def submit(self, fn: Callable, args: tuple, needs: Needs):
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self.ray.remote(fn)
        cpus = 1
        if needs.exclusive:  # every core of the node: nothing else runs beside the timed loop
            cpus = max(1, int(self._node_cpus(needs.resource)))
        return remote.options(num_cpus=cpus, resources={needs.resource: 1}, max_retries=RETRIES,
                              retry_exceptions=False).remote(*args)

    def _node_cpus(self, resource: str) -> float:
        nodes = [n for n in self.ray.nodes() if n.get("Alive") and resource in n.get("Resources", {})]
        return min((n["Resources"].get("CPU", 1) for n in nodes), default=1)

    def wait(self, handles: list) -> list:
        done, _ = self.ray.wait(handles, num_returns=1)
        return done

    def result(self, handle):
        return self.ray.get(handle)

    def close(self) -> None:
        self.ray.shutdown()


def open_executor(cluster: str | None, jobs: int):
    if cluster:
        return RayCluster(cluster)
    if jobs > 1:
        return ProcessPool(jobs)
    return InProcess()
