"""The host-side exchanges (stop flag, numbers, objects, barrier) through ``World.host_group``:
under NCCL a gloo group beside the default one, so that agreeing each step never syncs the GPU.
Here the default group is gloo too; what is checked is that every exchange takes the group."""

from __future__ import annotations

from dataclasses import replace
from unittest import mock

import torch.distributed as dist

from advkit.distributed import World
from tests.distributed.spawn import run_workers


def _exchanges(world: World) -> dict:
    host = dist.new_group(backend="gloo")
    world = replace(world, host_group=host)
    with mock.patch.object(dist, "all_reduce", wraps=dist.all_reduce) as all_reduce:
        stop = world.agree(world.rank == 1)
        total = world.sum_number(world.rank + 1.5)
    groups = [call.kwargs.get("group") for call in all_reduce.call_args_list]
    world.barrier()
    return {
        "stop": stop, "total": total, "through_host": all(g is host for g in groups),
        "objects": world.gather_objects({"rank": world.rank}),
        "broadcast": world.broadcast_object(f"from {world.rank}"),
    }  # fmt: skip


def test_host_side_exchanges_go_through_the_host_group(tmp_path):
    first, second = run_workers(_exchanges, tmp_path)
    assert first["stop"] and second["stop"]
    assert first["total"] == second["total"] == 4.0
    assert first["through_host"] and second["through_host"]
    assert first["objects"] == [{"rank": 0}, {"rank": 1}] and second["objects"] is None
    assert first["broadcast"] == second["broadcast"] == "from 0"
