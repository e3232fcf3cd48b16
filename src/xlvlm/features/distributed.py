"""Extraction over several processes (``torchrun``, ``accelerate launch``): one store at the end.

Each rank takes a contiguous stretch of the samples and extracts it into its own sub-store;
rank 0 then writes the top-level manifest, which lists every rank's shards in rank order
(= input order), so ``FeatureStore(out)`` reads one store: same ids, order and values as a
single-process run with the same batch size. Layout::

    OUT/manifest.json                          the merged manifest, written last (by rank 0)
    OUT/rank-00000-of-00002/manifest.json      rank 0's own store, complete by itself
    OUT/rank-00000-of-00002/shard-00000.*      its shards, named by relative path above
    OUT/rank-00001-of-00002/...

Splitting: the samples are cut into batches of ``batch_size`` first and each rank gets a
contiguous run of whole batches (``rank_range``), so every batch holds the same samples as in
a single-process run and padding, hence every value, is the same. Contiguous rather than
strided, so that the merged store is the ranks' shards one after another.

Resuming is per rank: rerun the same command with the same number of processes and each
rank resumes its own sub-store after its last complete shard (ranks already done return at
once); rank 0 merges when all are complete. A finished store is reused as is, under
``torchrun`` or not.

The process group (gloo on CPU, nccl on CUDA) only checks that every rank read the same
samples and waits for all ranks before the merge; its timeout is long (24 h by default)
because ranks finish at different times.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

import torch

from xlvlm.errors import XlvlmError, argument
from xlvlm.features.manifest import Manifest
from xlvlm.features.run import DEFAULT_SHARD_SAMPLES, extract, input_digest, store_settings
from xlvlm.features.selectors import parse_selector
from xlvlm.features.store import MANIFEST, FeatureStore, StoreWriter, ids_digest
from xlvlm.hooks import resolve_layers
from xlvlm.io import atomic_write_json

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a multi-process launch: rank, world size, local rank."""

    rank: int
    world_size: int
    local_rank: int

    @classmethod
    def from_env(cls, environ=None) -> "DistributedContext | None":
        """From ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (set by torchrun and accelerate);
        None when not launched that way or with a single process."""
        env = os.environ if environ is None else environ
        if "WORLD_SIZE" not in env:
            return None
        try:
            world_size = int(env["WORLD_SIZE"])
            rank = int(env.get("RANK", "0"))
            local_rank = int(env.get("LOCAL_RANK", str(rank)))
        except ValueError:
            raise XlvlmError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers, got {env.get('RANK')!r}/"
                             f"{env.get('WORLD_SIZE')!r}/{env.get('LOCAL_RANK')!r}")
        if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
            raise XlvlmError(f"RANK={rank} does not fit WORLD_SIZE={world_size}; launch with torchrun")
        return cls(rank, world_size, local_rank) if world_size > 1 else None

    def device(self, device: str) -> str:
        """``cuda`` becomes this process's GPU, ``cuda:LOCAL_RANK``; other devices stay as given."""
        return f"cuda:{self.local_rank}" if str(device) == "cuda" else str(device)


def rank_range(n_samples: int, batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """Samples [start, stop) of ``rank``: a contiguous run of whole batches; ranks differ by at
    most one batch, and the last batch may be short as in a single-process run."""
    n_batches = -(-n_samples // batch_size)
    first, last = rank * n_batches // world_size, (rank + 1) * n_batches // world_size
    return min(first * batch_size, n_samples), min(last * batch_size, n_samples)


def rank_folder(out: str | Path, rank: int, world_size: int) -> Path:
    return Path(out) / f"rank-{rank:05d}-of-{world_size:05d}"


def init_process_group(context: DistributedContext, device: str, timeout: timedelta = DEFAULT_TIMEOUT) -> bool:
    """Join the launch's process group (env:// rendezvous): nccl for CUDA devices, gloo
    otherwise. Returns False when one was already initialised (e.g. by accelerate)."""
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    cuda = str(device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group("nccl" if cuda else "gloo", rank=context.rank, world_size=context.world_size,
                            timeout=timeout)
    return True


def _barrier(device: str) -> None:
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.device(device).index or 0])
    else:
        dist.barrier()


# params: xlvlm.extract's documented keywords plus the process group
def extract_distributed(vlm, samples: Sequence[dict], layers=("final",), select="last-prompt", out=None,
                        generate: bool = False, max_new_tokens: int = 20, batch_size: int = 8,
                        shard_samples: int = DEFAULT_SHARD_SAMPLES, skip_bad: bool = False, progress: bool = True,
                        context: DistributedContext | None = None) -> FeatureStore:
    """``xlvlm.extract`` on this rank's share of ``samples``; every rank returns the merged store.

    Call it on every rank with the same arguments, after ``init_process_group``. ``context``
    defaults to the environment; without a multi-process launch this is plain ``extract``.
    """
    options = dict(layers=layers, select=select, generate=generate, max_new_tokens=max_new_tokens,
                   batch_size=batch_size, shard_samples=shard_samples, skip_bad=skip_bad)
    context = context or DistributedContext.from_env()
    if context is None:
        return extract(vlm, samples, out=out, progress=progress, **options)
    import torch.distributed as dist

    if not dist.is_initialized():
        raise XlvlmError("distributed extraction needs a process group: call "
                         "xlvlm.features.distributed.init_process_group first (the CLI does)")
    if out is None:
        raise XlvlmError("extract needs an output folder (out=...)")
    if batch_size < 1:
        raise XlvlmError(f"batch size must be >= 1, not {batch_size}")
    samples = list(samples)
    if not samples:
        raise XlvlmError("no samples to extract")
    out = Path(out)
    ids = [s["id"] for s in samples]
    device = str(vlm.device) if hasattr(vlm, "device") else "cpu"
    digest = input_digest(samples)  # every rank reads all images once: the key covers the whole input
    views = [None] * context.world_size
    dist.all_gather_object(views, (digest, len(ids)))
    if len(set(views)) > 1:
        counts = ", ".join(f"rank {r}: {n}" for r, (_, n) in enumerate(views))
        raise XlvlmError(f"ranks read different samples ({counts} samples); give every rank the same --data and "
                         f"subset options")
    selector = parse_selector(select) if isinstance(select, str) else select
    settings = store_settings(vlm, [ref.key for ref in resolve_layers(vlm, layers)], selector, generate,
                              max_new_tokens)
    if (out / MANIFEST).exists():
        writer = StoreWriter(out, settings, ids, digest)  # refuses other settings or samples
        if not writer.manifest.complete:
            raise XlvlmError(f"{out}: holds a partial single-process store; resume it without torchrun "
                             f"or choose another {argument('out')}")
        _barrier(device)
        return FeatureStore(out)

    start, stop = rank_range(len(samples), batch_size, context.rank, context.world_size)
    folder = rank_folder(out, context.rank, context.world_size)
    if start < stop:
        extract(vlm, samples[start:stop], out=folder, progress=progress, **options)
    else:  # more processes than batches: an empty, complete store keeps the merge uniform
        writer = StoreWriter(folder, settings, [], input_digest([]))
        if not writer.manifest.complete:
            writer.finish()
    _barrier(device)
    if context.rank == 0:
        merge_ranks(out, context.world_size, ids, batch_size, input_sha256=digest)
    _barrier(device)
    return FeatureStore(out)


def merge_ranks(out: str | Path, world_size: int, sample_ids: list[str], batch_size: int,
                input_sha256: str | None = None) -> Path:
    """Write ``out/manifest.json`` listing the shards of all ``world_size`` complete rank
    stores in input order; each shard gets ``sample_offset`` (samples of the ranks before it).
    ``input_sha256``: the resume key of the whole input (``input_digest``). Returns the
    manifest's path."""
    out = Path(out)
    parts = []
    for rank in range(world_size):
        folder = rank_folder(out, rank, world_size)
        manifest = Manifest.read(folder)
        if not manifest.complete:
            raise XlvlmError(f"{folder}: rank {rank} has not finished; rerun the same command to resume it")
        parts.append((folder, manifest))
    settings = parts[0][1].settings
    for folder, manifest in parts[1:]:
        key = manifest.settings.difference(settings)
        if key is not None:
            raise XlvlmError(f"{folder}: made with {key}={getattr(manifest.settings, key)!r}, rank 0 with "
                             f"{getattr(settings, key)!r}; the ranks' stores do not belong together, re-extract "
                             f"into a new folder")
    n_input = [manifest.n_samples or 0 for _, manifest in parts]
    if sum(n_input) != len(sample_ids):
        raise XlvlmError(f"{out}: the rank stores hold {sum(n_input)} input samples, not "
                         f"{len(sample_ids)}; re-extract into a new folder")
    shards, skipped, ranks = [], [], []
    stored = first_input = 0
    for (folder, manifest), n in zip(parts, n_input):
        offset = stored
        for shard in manifest.shards:
            shards.append(replace(shard, file=f"{folder.name}/{shard.file}",
                                  samples_file=f"{folder.name}/{shard.samples_file}",
                                  sample_offset=offset + shard.sample_offset))
            stored += shard.n_samples
        skipped.extend(manifest.skipped)
        ranks.append({"folder": folder.name, "first_input": first_input, "n_input": n})
        first_input += n
    merged = Manifest(settings, status="complete", n_samples=len(sample_ids), ids_sha256=ids_digest(sample_ids),
                      input_sha256=input_sha256, shards=shards, skipped=skipped,
                      n_skipped_in_shards=sum(manifest.n_skipped_in_shards for _, manifest in parts),
                      created=min(str(manifest.created or "") for _, manifest in parts),
                      finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      extra={"world_size": world_size, "batch_size": batch_size, "ranks": ranks})
    stale = sorted(p.name for p in out.glob("rank-*-of-*") if p.is_dir() and p.name not in {r["folder"] for r in ranks})
    if stale:
        log.warning("%s: folders %s belong to a run with another number of processes; they are not part of the "
                    "store and can be deleted", out, ", ".join(stale))
    path = out / MANIFEST
    try:
        atomic_write_json(path, merged.to_dict())
    except OSError as exc:
        raise XlvlmError(f"{path}: cannot write ({exc.strerror or exc}); the rank stores are intact, "
                         f"rerun the same command to merge them")
    return path
