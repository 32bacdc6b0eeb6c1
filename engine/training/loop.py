"""The fine-tuning loop: LoRA, prefix or prompt tuning (peft), full fine-tuning or DPO.

A plain torch loop rather than HF Trainer: the loss covers completion tokens only and logits
are computed only there, examples are batched by length, and every optimizer step is ours to
checkpoint, so `should_stop` and resume are exact. DPO (`dpo.py`) trains a LoRA adapter on
preference pairs in this same loop, so its jobs queue, cancel, resume and checkpoint alike.
Each checkpoint is registered in the store as a model with its lineage. Under torchrun
(WORLD_SIZE > 1) gradients are averaged with DDP and only rank 0 talks to the store or writes
files.
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from tunelab.engine.errors import BadInputError
from tunelab.engine.models.prompt_learning import check_supported
from tunelab.engine.training.checkpoint import (
    Checkpointer,
    CheckpointState,
    build_model,
    latest_checkpoint,
    load_state,
)
from tunelab.engine.training.config import TrainingConfig
from tunelab.engine.training.data import (
    ExampleBuilder,
    batch_order,
    packed_order,
    plan_splits,
    shard,
)
from tunelab.engine.training.devices import collective_backend, cuda_index, process_device
from tunelab.engine.training.progress import TrainingProgress
from tunelab.engine.training.steps import (
    collate,
    collate_packed,
    label_metrics,
    label_predictions,
    loss_sum,
    validation_loss,
)

TrainingProgressCallback = Callable[["TrainingProgress"], None]
StopCallback = Callable[[], bool]


@dataclass
class TrainingRequest:
    """What to train: a base model, a dataset rendered with a prompt version, and a config.

    Args:
        output_dir: where checkpoints go (one folder per saved step).
        job_id: the store job this run belongs to (recorded on each model), if any.
        resume: continue from the newest checkpoint in output_dir when there is one.
        model_name_prefix: names of the registered checkpoints (default from base and job).
    """

    config: TrainingConfig
    base_model_id: int
    dataset_id: int
    prompt_version_id: int
    output_dir: Path
    job_id: int | None = None
    resume: bool = True
    model_name_prefix: str = ""


@dataclass
class TrainingResult:
    """How a run ended: 'completed', 'stopped' (should_stop) or 'early_stopped'."""

    status: str
    step: int
    total_steps: int
    model_ids: list[int]
    best_model_id: int | None
    best_metric: float | None
    tokens_per_s: float
    peak_memory_mb: float


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    device: str = "cpu"
    """This process's device: collectives run on it (NCCL accepts only CUDA tensors)."""

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(device=device)
    import torch
    import torch.distributed as dist  # heavy import: only under torchrun

    index = cuda_index(device)
    if index is not None:  # before anything touches CUDA, or every rank lands on GPU 0
        torch.cuda.set_device(index)
    if not dist.is_initialized():
        dist.init_process_group(backend=collective_backend(device))
    return _Dist(dist.get_rank(), dist.get_world_size(), device)


def _any_rank(flag: bool, dist_ctx: _Dist) -> bool:
    """True when any process wants to stop, so all ranks leave the loop at the same step."""
    if dist_ctx.world_size == 1:
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([1.0 if flag else 0.0], device=dist_ctx.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def peak_memory_mb(device: str) -> tuple[float, str]:
    """Peak GPU memory allocated on CUDA, else the process's peak resident set size."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20, "cuda"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss"


def _pick_device(config: TrainingConfig) -> str:
    from tunelab.engine.models.loading import pick_device

    return process_device(pick_device(config.device), os.environ.get("LOCAL_RANK"))


def run_training(
    store: Any,
    request: TrainingRequest,
    on_progress: TrainingProgressCallback | None = None,
    should_stop: StopCallback | None = None,
) -> TrainingResult:
    """Train, validating and checkpointing as configured; returns how the run ended.

    Args:
        store: the workspace store (models are registered there; rank 0 only).
        request: base model, dataset, prompt version, config and output folder.
        on_progress: called after every step and evaluation (rank 0 only).
        should_stop: polled after every step; True saves a checkpoint and stops cleanly.
    """
    import torch  # heavy import: the trainer itself
    from transformers import get_scheduler, set_seed

    cfg = request.config
    device = _pick_device(cfg)
    dist_ctx = _init_distributed(device)
    base = store.get_model_by_id(request.base_model_id)
    dataset = store.get_dataset_by_id(request.dataset_id)
    version = store.get_prompt_version_by_id(request.prompt_version_id)
    report = on_progress if (on_progress and dist_ctx.main) else (lambda p: None)
    report(TrainingProgress("loading", 0, 0, 0.0, message=f"loading {base.name}"))

    set_seed(cfg.seed)
    resume_dir = latest_checkpoint(request.output_dir) if request.resume else None
    model, tokenizer, virtual = build_model(store, base, cfg, device, resume_dir)
    # Refuse at launch, not after training, an adapter that evaluation could not run right.
    check_supported(model, device)
    pad_id = tokenizer.pad_token_id

    splits = plan_splits(store, dataset, cfg)
    dpo = cfg.method == "dpo"
    labels: list[str] = []
    candidates: list[list[Any]] = []
    if dpo:  # rows are prompt/chosen/rejected, already rendered: no prompt version applies
        from tunelab.engine.training.dpo import PairTotals, pair_loss, preference_pairs

        train: list[Any] = cast("list[Any]", preference_pairs(splits.train, tokenizer,
                                                              cfg.max_seq_len))  # fmt: skip
        val: list[Any] = cast("list[Any]", preference_pairs(splits.val, tokenizer,
                                                            cfg.max_seq_len))  # fmt: skip
    else:
        builder = ExampleBuilder(store, dataset, version, tokenizer, cfg)
        train = cast("list[Any]", builder.examples(splits.train))
        val = cast("list[Any]", builder.examples(splits.val))
        labels = list(dataset.labels) if dataset.task == "classification" else []
        candidates = [[builder.example(r, answer=lab) for lab in labels] for r in splits.val]
    answers = [labels.index(e.reference) if e.reference in labels else -1
               for e in val] if labels else []  # fmt: skip

    def epoch_batches(epoch: int) -> list[list[Any]]:
        lengths = [len(e) for e in train]
        if cfg.packing:
            plan: list[Any] = packed_order(
                lengths, cfg.batch_size, cfg.max_seq_len, cfg.seed, epoch
            )
        else:
            plan = batch_order(lengths, cfg.batch_size, cfg.seed, epoch, cfg.group_by_length)
        return shard(plan, dist_ctx.rank, dist_ctx.world_size)

    batches_per_epoch = len(epoch_batches(0))
    steps_per_epoch = math.ceil(batches_per_epoch / cfg.grad_accum)
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))

    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr or 0.0,  # always set by TrainingConfig.__post_init__
    )  # fmt: skip
    scheduler = get_scheduler(
        cfg.scheduler, optimizer,
        num_warmup_steps=int(cfg.warmup_ratio * total_steps), num_training_steps=total_steps,
    )  # fmt: skip
    state = CheckpointState()
    if resume_dir is not None:
        state = load_state(resume_dir, optimizer, scheduler)
        report(TrainingProgress("loading", state.step, total_steps, 0.0,
                                message=f"resumed from step {state.step}"))  # fmt: skip
    ddp_model = model
    if dist_ctx.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        index = cuda_index(device)
        ddp_model = DistributedDataParallel(model, device_ids=None if index is None else [index])

    checkpointer = Checkpointer(store, request, base, dataset, version, tokenizer, dist_ctx.main)
    eval_bs = max(cfg.batch_size, 8)

    def evaluate() -> dict[str, float]:
        model.eval()
        out: dict[str, float] = {}
        if dpo and val:
            from tunelab.engine.training.dpo import validate_pairs

            out = validate_pairs(model, val, eval_bs, cfg.beta, pad_id, device)
        elif val:
            out["val_loss"] = validation_loss(model, val, eval_bs, pad_id, device, virtual)
        if labels and val:
            picked = label_predictions(model, candidates, eval_bs, pad_id, device, virtual)
            out.update(label_metrics(picked, answers, labels))
        elif val and cfg.metric_for_best == "val_exact_match":
            from tunelab.engine.training.steps import exact_match

            out["val_exact_match"] = exact_match(model, tokenizer, val, eval_bs, device)
        model.train()
        return out

    if cfg.metric_for_best not in ("val_loss",) and not labels and not val:
        raise BadInputError(f"metric_for_best {cfg.metric_for_best} needs validation rows")

    model.train()
    step = state.step
    cache: dict[int, list[list[Any]]] = {}
    run_tokens, run_time = 0, 0.0
    ended = "completed"
    last_saved = step if resume_dir is not None else -1
    last_progress: TrainingProgress | None = None
    while step < total_steps:
        epoch, within = divmod(step, steps_per_epoch)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = epoch_batches(epoch)
        window = cache[epoch][within * cfg.grad_accum : (within + 1) * cfg.grad_accum]
        started = time.perf_counter()
        batches: list[Any]
        if cfg.packing:
            batches = [collate_packed([[train[i] for i in row] for row in b], pad_id, device)
                       for b in window]  # fmt: skip
            tokens = sum(len(train[i]) for b in window for row in b for i in row)
        elif dpo:  # batches of pairs; the loss is a mean over pairs, not completion tokens
            batches = [[train[i] for i in b] for b in window]
            tokens = sum(len(train[i]) for b in window for i in b)
        else:
            batches = [collate([train[i] for i in b], pad_id, device) for b in window]
            tokens = sum(len(train[i]) for b in window for i in b)
        if dpo:
            targets, pair_totals = sum(len(b) for b in window), PairTotals()
        else:
            targets = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
        total_loss = 0.0
        for n, batch in enumerate(batches):
            sync = n == len(batches) - 1 or dist_ctx.world_size == 1
            context = ddp_model.no_sync() if not sync else _nullcontext()
            with context:
                if dpo:
                    value = pair_loss(model, ddp_model, batch, cfg.beta, pad_id, device,
                                      pair_totals)  # fmt: skip
                else:
                    value, _ = loss_sum(ddp_model, batch, virtual)
                (value / max(targets, 1)).backward()
            total_loss += float(value.detach())
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        elapsed = time.perf_counter() - started
        run_tokens += tokens * dist_ctx.world_size
        run_time += elapsed
        state.step = step
        state.tokens_seen += tokens * dist_ctx.world_size
        train_loss = total_loss / max(targets, 1)
        lr = scheduler.get_last_lr()[0]
        memory, kind = peak_memory_mb(device)
        speed = run_tokens / run_time if run_time else 0.0
        progress = TrainingProgress(
            "training",
            step,
            total_steps,
            step / steps_per_epoch,
            train_loss,
            lr,
            speed,
            (total_steps - step) * run_time / max(step - state.resumed_at, 1),
            memory,
            kind,
            dict(state.last_val),
            state.best_dict(),
            {"train_loss": train_loss, "lr": lr, "tokens_per_s": speed,
             **({k: v for k, v in pair_totals.means("train_").items() if k != "train_loss"}
                if dpo else {})},
        )  # fmt: skip
        report(progress)
        last_progress = progress

        evaluated = False
        want_eval = cfg.eval_every_steps and step % cfg.eval_every_steps == 0
        if dist_ctx.main and (want_eval or step == total_steps):
            report(_phase(progress, "evaluating"))
            state.last_val = evaluate()
            evaluated = True
        stop = should_stop() if should_stop else False
        save_due = evaluated or (cfg.save_every_steps and step % cfg.save_every_steps == 0)
        if dist_ctx.main and (save_due or stop or step == total_steps):
            report(_phase(progress, "saving", val=state.last_val if evaluated else {}))
            model_id = checkpointer.save(model, cfg, step, state, optimizer, scheduler,
                                         state.last_val if evaluated else {})  # fmt: skip
            last_saved = step
            if evaluated and model_id is not None:
                report(_phase(progress, "evaluated", val=state.last_val, best=state.best_dict(),
                              metrics=dict(state.last_val)))  # fmt: skip
        early = bool(
            dist_ctx.main and cfg.early_stopping_patience
            and state.evals_without_improvement >= cfg.early_stopping_patience
        )  # fmt: skip
        if _any_rank(stop or early, dist_ctx):
            ended = "early_stopped" if early else "stopped"
            if dist_ctx.main and last_saved != step:
                checkpointer.save(model, cfg, step, state, optimizer, scheduler, {})
            break
    if step >= total_steps and ended == "completed" and dist_ctx.main and last_saved != step:
        checkpointer.save(model, cfg, step, state, optimizer, scheduler, {})
    memory, _ = peak_memory_mb(device)
    result = TrainingResult(
        ended,
        step,
        total_steps,
        checkpointer.model_ids,
        state.best_model_id,
        state.best_value,
        run_tokens / run_time if run_time else 0.0,
        memory,
    )
    final = TrainingProgress(
        "done",
        step,
        total_steps,
        step / steps_per_epoch,
        tokens_per_s=result.tokens_per_s,
        peak_memory_mb=memory,
        memory_kind=peak_memory_mb(device)[1],
        val=dict(state.last_val),
        best=state.best_dict(),
        message=ended,
    )
    if last_progress is not None:
        final = _phase(last_progress, "done", val=dict(state.last_val), best=state.best_dict(),
                       message=ended, eta_s=0.0, peak_memory_mb=memory)  # fmt: skip
    report(final)
    if dist_ctx.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
    return result


def _phase(progress: TrainingProgress, phase: str, **changes: Any) -> TrainingProgress:
    data = {**asdict(progress), "metrics": {}, "phase": phase, **changes}
    return TrainingProgress(**data)


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
