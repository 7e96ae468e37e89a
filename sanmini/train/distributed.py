"""One process per device, through torch.distributed: setup, teardown, and the few collectives.

``torchrun --nproc_per_node=G [--nnodes N ...] -m sanmini.train ...`` starts G processes per node
and tells each its ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` (and where rank 0 listens) through
the environment. :func:`setup` reads them, picks the process's device (``cuda:LOCAL_RANK``, or the
CPU) and joins the process group: NCCL between GPUs, gloo between CPU processes. Without torchrun
the world is one process and no process group is made, so the same code runs in both cases.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """Where this process stands: its rank among ``size`` processes, and its device."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, shows progress and writes every file."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def pick_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"``: CUDA if available, else the CPU; ``"cuda"``: this process's GPU, or an error."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("--device cuda, but torch sees no CUDA device "
                           "(torch.cuda.is_available() is False); use --device cpu or auto")
    if local_rank >= torch.cuda.device_count():
        raise RuntimeError(f"process with LOCAL_RANK {local_rank} has no GPU: this node has "
                           f"{torch.cuda.device_count()}; start at most that many per node")
    return torch.device("cuda", local_rank)


def setup(device: str = "auto") -> World:
    """Read torchrun's environment, pick the device, join the process group if there are peers."""
    size = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    world = World(rank, size, local_rank, pick_device(device, local_rank))
    if world.device.type == "cuda":
        torch.cuda.set_device(world.device)
    if world.distributed and not dist.is_initialized():
        backend = "nccl" if world.device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=size,
                                device_id=world.device if backend == "nccl" else None)
    return world


def teardown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(world: World, values: list[float]) -> list[float]:
    """Sum a few numbers over all processes (one collective); unchanged in a single process."""
    if not world.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=world.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_max(world: World, value: float) -> float:
    if not world.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=world.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor.item()


def gather(world: World, obj) -> list:
    """Every process's ``obj`` (picklable), in rank order, on every process."""
    if not world.distributed:
        return [obj]
    objects = [None] * world.size
    dist.all_gather_object(objects, obj)
    return objects


def broadcast_buffers(world: World, model: torch.nn.Module) -> None:
    """Give every process rank 0's buffers (batch-norm running statistics): DDP synchronises
    gradients, not the statistics each process gathers from its own images."""
    if world.distributed:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
