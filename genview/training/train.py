"""The training loop: one entry point for a single process and for torchrun (DDP).

Resume is exact: ``resume.pt`` holds the model (momentum encoders and queues included), optimiser, AMP scaler, RNG
states, epoch and step; batches are a pure function of (seed, epoch, step) (see data.py), so a run killed and resumed
ends with the weights of an uninterrupted one (on the CPU, where kernels are deterministic).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.utils.data import DataLoader

from genview.contracts import MANIFEST
from genview.errors import GenviewError
from genview.io import atomic_path, file_sha256, write_digest
from genview.methods import method_class
from genview.quality.weights import loss_coefficients
from genview.runtime import distributed
from genview.runtime.progress import progress
from genview.training.augment import color_on_device
from genview.training.data import PretrainDataset, epoch_indices, load_view_index, load_view_truth, stack_views
from genview.training.experiments import RECIPE_EXECUTION_KEYS
from genview.training.network import build_model
from genview.training.schedules import ema_momentum, learning_rate

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
RESUME_FILE = "resume.pt"
# Metrics go to a side file, copied to metrics.jsonl when the run ends: Snakemake deletes the outputs of an
# interrupted job before rerunning it, and the side file keeps the records of the steps the resumed run will not redo.
METRICS_PARTIAL = "metrics.partial.jsonl"
METRICS_FILE = "metrics.jsonl"
# A time-capped job: SLURM sends SIGTERM at the time limit (and earlier with `sbatch --signal=TERM@SECONDS`, which
# profiles/slurm asks for); USR1 is the usual early warning of hand-written job scripts. Either makes the run save a
# resume point at the next step boundary and exit with StopRequested's status, for the scheduler's retry to resume.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopRequested(GenviewError):
    """A stop signal arrived: the resume point is saved; a rerun of the same command continues from it."""

    exit_code = 75  # EX_TEMPFAIL: a temporary failure, try again


class _StopSignals:
    """Records the first stop signal while installed (main thread only; a no-op elsewhere)."""

    received: int | None = None

    def __enter__(self):
        self.received, self.previous = None, {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {number: signal.signal(number, self._handle) for number in STOP_SIGNALS}
        return self

    def _handle(self, number, frame) -> None:
        if self.received is None:
            self.received = number

    def __exit__(self, *exc) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)  # None: a handler set outside Python


def ignore_stop_signals(worker_id: int | None = None) -> None:
    """Ignore the stop signals, which SLURM sends to every process of the job. Loader workers (``worker_init_fn``,
    given their id): the main process ends them when it stops (torch's own SIGTERM handler would kill them, failing
    the step in progress). The trainer's process once its outputs are written: a signal then has nothing left to
    stop, and the default action would fail a finished job (resubmitted only to write the same outputs again)."""
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)


def _parameter_groups(model: nn.Module, weight_decay: float, decay_norm_and_bias: bool = False) -> list[dict]:
    """Biases and normalisation parameters get no weight decay (and so no LARS adaptation: timm's LARS adapts the
    groups with weight decay) unless ``decay_norm_and_bias`` (the recipe's, else the method's: MoCo v2, SimSiam,
    SwAV and the MoCo v3 ViT recipe decay every parameter); parameters of the method's ``fixed_lr_modules`` keep the
    base learning rate (SimSiam's predictor)."""
    fixed = {id(p) for name in model.fixed_lr_modules for p in getattr(model, name).parameters()}
    groups: dict[tuple[bool, bool], list] = {}
    for parameter in model.parameters():
        if parameter.requires_grad:
            no_decay = parameter.ndim < 2 and not decay_norm_and_bias
            groups.setdefault((no_decay, id(parameter) in fixed), []).append(parameter)
    return [
        {"params": params, "weight_decay": 0.0 if no_decay else weight_decay, "fixed_lr": fixed_lr}
        for (no_decay, fixed_lr), params in sorted(groups.items())
    ]


def distributed_batch_norm(model: nn.Module) -> nn.Module:
    """The model's BatchNorm for multi-GPU training: synchronised across GPUs, as the official recipes do, unless
    the method keeps per-GPU statistics (MoCo v2, whose shuffled BN is a no-op under SyncBatchNorm)."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(model) if model.sync_batch_norm else model


def build_optimizer(model: nn.Module, recipe: dict) -> torch.optim.Optimizer:
    groups = _parameter_groups(model, recipe["weight_decay"], recipe["decay_norm_and_bias"])
    if recipe["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=0.0, momentum=recipe["momentum"])
    if recipe["optimizer"] == "lars":
        from timm.optim import Lars

        return Lars(groups, lr=0.0, momentum=recipe["momentum"])
    return torch.optim.AdamW(groups, lr=0.0, betas=tuple(recipe["betas"]))


def _rng_state() -> dict:
    """Every generator's state as tensors and plain values, so resume points load with ``weights_only=True``."""
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            **numpy_state,
            "state": {
                "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                "pos": numpy_state["state"]["pos"],
            },
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    key = numpy_state["state"]["key"].numpy().astype(np.uint32)
    np.random.set_state({**numpy_state, "state": {"key": key, "pos": numpy_state["state"]["pos"]}})
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tensor_bytes(obj) -> int:
    """The bytes of the tensors in a nested checkpoint (about its size on disk: the free space it needs)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(map(_tensor_bytes, obj.values()))
    if isinstance(obj, (list, tuple)):
        return sum(map(_tensor_bytes, obj))
    return 0


def _save(obj, path: Path) -> None:
    with atomic_path(path, expected_bytes=_tensor_bytes(obj)) as tmp:
        torch.save(obj, tmp)


def default_execution() -> dict:
    """The execution settings' defaults (config/schema.yaml): loader workers, resume-point cadence, the non-finite
    loss limit."""
    from genview.config.load import load_schema

    recipe = load_schema()["$defs"]["recipe"]["properties"]
    return {key: recipe[key]["default"] for key in RECIPE_EXECUTION_KEYS}


class Trainer:
    def __init__(
        self,
        experiment: dict,
        out_dir: Path,
        *,
        manifest: str,
        view_manifests: list[str],
        quality_vector: str | None,
        device: str,
        execution: dict | None = None,
    ):
        self.experiment, self.out_dir, self.device = experiment, Path(out_dir), torch.device(device)
        self.recipe = experiment["recipe"]
        self.execution = {**default_execution(), **(execution or {})}
        self.rank, self.world = distributed.rank(), distributed.world_size()
        if self.recipe["batch_size"] % self.world:
            raise GenviewError(f"recipe batch_size {self.recipe['batch_size']} is not divisible by {self.world} GPUs")
        self.local_batch = self.recipe["batch_size"] // self.world
        torch.manual_seed(experiment["seed"])
        self.model = build_model(experiment).to(self.device)
        if distributed.is_distributed() and self.device.type == "cuda":
            self.model = distributed_batch_norm(self.model)
        self.kind = method_class(experiment["method"]).kind
        self.dataset = self._dataset(manifest, view_manifests)
        if self.kind == "supervised":
            self._check_labels(manifest)
        self.steps_per_epoch = len(self.dataset) // self.recipe["batch_size"]
        if self.steps_per_epoch == 0:
            raise GenviewError(
                f"{experiment['name']}: {len(self.dataset)} training images cannot fill one batch of "
                f"{self.recipe['batch_size']}; lower the recipe's batch_size"
            )
        self.total_steps = self.steps_per_epoch * self.recipe["epochs"]
        self.base_lr = experiment["peak_lr"]
        self.optimizer = build_optimizer(self.model, self.recipe)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.recipe["amp"])
        self.use_amp = self.device.type == "cuda" and self.amp_dtype is not None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.scorer = self._scorer(quality_vector)
        self.view_truth = load_view_truth(view_manifests) if self.scorer else {}
        self.inputs_sha256 = {path: file_sha256(path) for path in [manifest, *view_manifests, quality_vector] if path}
        self.ema_base = self.recipe["ema_momentum"] or self.model.options.get("base_momentum")
        self.global_step, self.nonfinite_in_row, self.skipped_steps = 0, 0, 0
        self.stop_signals: _StopSignals | None = None  # set by train()
        self.ddp_model = self.model
        if distributed.is_distributed():
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )

    # --- setup -------------------------------------------------------------------------------------------------
    def _dataset(self, manifest: str, view_manifests: list[str]) -> PretrainDataset:
        rows = MANIFEST.read(manifest)
        rows = rows[rows["split"] == "train"]
        views, variant = self.experiment["views"], self.experiment["variant"]
        preset = self.recipe["augmentation"] or method_class(self.experiment["method"]).default_augmentation
        return PretrainDataset(
            rows,
            mode=self.kind,
            augmentation_preset=preset,
            image_size=self.recipe["image_size"],
            min_scale=self.recipe["min_scale"],
            seed=self.experiment["seed"],
            views=load_view_index(view_manifests) if variant != "baseline" else None,
            sources=views["sources"],
            generated_prob=views["generated_prob"],
            n_views=views["n_views"],
            syn_ratio=views["syn_ratio"],
            shuffle_views=views["shuffle"],
            multi_crop=self.recipe["multi_crop"],
            downsample=self.recipe["downsample"],
            augment_on=self.recipe["augment_on"],
        )

    def _check_labels(self, manifest: str) -> None:
        classes, heads = self.dataset.classes, self.model.options["num_classes"]
        if "" in classes:
            raise GenviewError(
                f"{self.experiment['name']}: {manifest} has unlabelled training images; 'supervised' needs labels"
            )
        if len(classes) > heads:
            raise GenviewError(
                f"{self.experiment['name']}: the training split of {manifest} has {len(classes)} classes, more than "
                f"method_args.supervised.num_classes ({heads})"
            )

    def _scorer(self, quality_vector: str | None):
        if self.experiment["variant"] != "genview":
            return None
        if not quality_vector:
            raise GenviewError(f"{self.experiment['name']}: the genview variant needs --quality-vector")
        from genview.quality.encoder import QualityScorer

        spec = self.experiment["quality_encoder"]
        return QualityScorer(
            spec,
            quality_vector,
            device=str(self.device),
            image_size=spec["image_size"],
            normalization=self.experiment["quality"]["normalization"],
        )

    def coefficients(self, epoch: int) -> tuple[float, ...]:
        """c0..c3 of this epoch (resolved and checked against the method by genview.training.experiments)."""
        quality = self.experiment["quality"]
        return loss_coefficients(epoch, quality["early_coefs"], quality["later_coefs"], quality["epoch_switch"])

    def _loader(self, epoch: int, skip_steps: int) -> DataLoader:
        self.dataset.set_epoch(epoch)
        indices = epoch_indices(
            len(self.dataset), self.recipe["batch_size"], self.experiment["seed"], epoch, self.rank, self.world
        )
        return DataLoader(
            self.dataset,
            batch_size=self.local_batch,
            sampler=indices[skip_steps * self.local_batch :],
            num_workers=self.execution["num_workers"],
            collate_fn=self._collate,
            drop_last=True,
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=ignore_stop_signals,
        )

    def _collate(self, samples):
        if self.kind == "supervised":
            images, labels, index = zip(*samples)
            return dict(images=torch.stack(images), labels=torch.tensor(labels), index=torch.tensor(index))
        if self.kind == "two_view":
            view1, view2, local_views, index = zip(*samples)
            local_views = (
                tuple(zip(*[part.unbind(0) for part in stack_views(local_views, 1)]))
                if isinstance(local_views[0], tuple)
                else stack_views(local_views, 1).unbind(0)
                if local_views[0] is not None
                else ()
            )
            return dict(
                view1=stack_views(view1), view2=stack_views(view2), local_views=local_views, index=torch.tensor(index)
            )
        views, captions, real, index = zip(*samples)
        from genview.methods.text import tokenize

        return dict(
            views=stack_views(views, 1),
            captions=list(captions),
            real=torch.stack(real),
            tokens=tokenize(list(captions), self.model.context_length),
            index=torch.tensor(index),
        )

    def _on_device(self, views) -> torch.Tensor:
        """8-bit views of the loader as [0, 1] floats on the device; views of the device path (8-bit crops with
        their colour rows) get their colour steps here, on the whole batch."""
        rows = None
        if isinstance(views, tuple):
            views, rows = views
        images = views.to(self.device, non_blocking=True).float().div_(255)
        if rows is None:
            return images
        flat = color_on_device(images.flatten(0, -4), rows.flatten(0, -2).to(self.device), images.shape[-1])
        return flat.view(images.shape)

    # --- state -------------------------------------------------------------------------------------------------
    def state(self, epoch: int, step_in_epoch: int) -> dict:
        return dict(
            format=CHECKPOINT_FORMAT,
            model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(),
            scaler=self.scaler.state_dict(),
            rng=_rng_state(),
            epoch=epoch,
            step_in_epoch=step_in_epoch,
            global_step=self.global_step,
            nonfinite_in_row=self.nonfinite_in_row,
            skipped_steps=self.skipped_steps,
            experiment=self.experiment,
            inputs_sha256=sorted(self.inputs_sha256.values()),
        )

    def save_resume_point(self, epoch: int, step_in_epoch: int) -> None:
        if self.rank == 0:
            _save(self.state(epoch, step_in_epoch), self.out_dir / RESUME_FILE)

    def resume(self) -> tuple[int, int]:
        path = self.out_dir / RESUME_FILE
        state = torch.load(path, map_location=self.device, weights_only=True) if path.is_file() else None
        if state is not None and state.get("experiment") != self.experiment:
            # Only what the training computes from is compared (execution settings such as the run time, memory or
            # loader workers are not in the experiment): another experiment's state must not be continued.
            log.warning("%s was made by another configuration of %s; starting over", path, self.experiment["name"])
            state = None
        if state is not None and state.get("inputs_sha256") != sorted(self.inputs_sha256.values()):
            # Snakemake reruns a training when its inputs changed; a resume point made from the old ones is stale.
            log.warning("%s was made from other input files (%s); starting over", path, ", ".join(self.inputs_sha256))
            state = None
        if state is None:
            if self.rank == 0:  # records of a run killed before its first resume point, or of a stale one
                (self.out_dir / METRICS_PARTIAL).unlink(missing_ok=True)
            return 0, 0
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        self.global_step, self.nonfinite_in_row = state["global_step"], state["nonfinite_in_row"]
        self.skipped_steps = state["skipped_steps"]
        log.info("resumed from %s at epoch %d, step %d", path, state["epoch"], self.global_step)
        self._truncate_metrics(self.global_step)
        return state["epoch"], state["step_in_epoch"]

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric records written after the resume point; the resumed run writes them again."""
        path = self.out_dir / METRICS_PARTIAL
        if self.rank != 0 or not path.is_file():
            return

        def before(record: dict) -> bool:  # a step record's step ran before; an epoch record's ended at or before
            return record["step"] < step if record["type"] == "step" else record["step"] <= step

        kept = [line for line in path.read_text().splitlines() if before(json.loads(line))]
        with atomic_path(path) as tmp:
            tmp.write_text("".join(line + "\n" for line in kept))

    def log_metrics(self, record: dict) -> None:
        if self.rank == 0:
            with open(self.out_dir / METRICS_PARTIAL, "a") as handle:
                handle.write(json.dumps(record) + "\n")

    # --- one step ----------------------------------------------------------------------------------------------
    def loss(self, batch: dict, epoch: int) -> tuple[torch.Tensor, dict]:
        autocast = torch.autocast("cuda", dtype=self.amp_dtype) if self.use_amp else nullcontext()
        if self.kind == "supervised":
            with autocast:
                per_sample = self.ddp_model(batch["images"].to(self.device), batch["labels"].to(self.device))
            return per_sample.mean(), {}
        if self.kind == "two_view":
            view1, view2 = self._on_device(batch["view1"]), self._on_device(batch["view2"])
            quality = self.experiment["quality"]
            weights = (
                self.scorer.two_view_weights(view1, view2, quality["gamma"], quality["group_size"])
                if self.scorer
                else None
            )
            local_views = [self._on_device(crops) for crops in batch["local_views"]]
            with autocast:
                per_sample = self.ddp_model(view1, view2, local_views)
            terms = {}
            if weights is not None and self.view_truth:
                paths = [self.dataset.generated_view(int(i)) for i in batch["index"]]
                terms = self._weights_by_view_truth(weights, paths)
            weights = torch.ones_like(per_sample) if weights is None else weights.to(per_sample.dtype)
            terms |= {"weight_min": float(weights.min()), "weight_max": float(weights.max())}
            return (weights * per_sample).mean(), terms
        views = self._on_device(batch["views"])
        coefficients = self.coefficients(epoch)
        image_weights = text_weights = None
        if self.scorer and (coefficients[1] or coefficients[3]):
            quality = self.experiment["quality"]
            image_weights, text_weights = self.scorer.pairwise_weights(
                views, self._on_device(batch["real"]), batch["captions"], quality["gamma_ii"], quality["gamma_it"]
            )
        terms = {}
        if text_weights is not None and self.view_truth:
            # Each view's weight with its own caption: row v·B + b, column b.
            batch_size = views.shape[1]
            own = text_weights[torch.arange(len(text_weights)), torch.arange(len(text_weights)) % batch_size]
            generated = [self.dataset.generated_views(int(i)) for i in batch["index"]]
            paths = [generated[b][v] for v in range(views.shape[0]) for b in range(batch_size)]
            terms = self._weights_by_view_truth(own, paths)
        with autocast:
            out = self.ddp_model(
                views,
                batch["tokens"].to(self.device),
                coefficients=coefficients,
                image_weights=image_weights,
                text_weights=text_weights,
            )
        return out["loss"], terms | {k: float(v.detach()) for k, v in out.items() if k != "loss"}

    def _weights_by_view_truth(self, weights: torch.Tensor, paths: list[str | None]) -> dict:
        """Sums and counts of the quality weights of the pairs whose generated view (``paths``, one per weight; None
        for a real image) changed class and of faithful ones, where the generator recorded it (the shapes
        renderer): what the checks compare."""
        changed = [self.view_truth.get(path) for path in paths]
        terms = {}
        for kind, flag in (("changed", True), ("faithful", False)):
            chosen = torch.tensor([c is flag for c in changed], device=weights.device)
            terms[f"weight_sum_{kind}"] = float(weights[chosen].sum())
            terms[f"pairs_{kind}"] = int(chosen.sum())
        return terms

    def step(self, batch: dict, epoch: int) -> dict:
        lr = learning_rate(
            self.global_step,
            base_lr=self.base_lr,
            total_steps=self.total_steps,
            warmup_steps=int(self.recipe["warmup_epochs"] * self.steps_per_epoch),
            min_lr=self.recipe["min_lr"],
        )
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr if group["fixed_lr"] else lr
        loss, terms = self.loss(batch, epoch)
        finite = torch.tensor(float(torch.isfinite(loss.detach())), device=self.device)
        if distributed.all_reduce_mean(finite).item() < 1.0:  # every rank skips together
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            self.nonfinite_in_row += 1
            if self.nonfinite_in_row >= self.execution["max_nonfinite_in_row"]:
                raise GenviewError(
                    f"{self.experiment['name']}: {self.nonfinite_in_row} non-finite losses in a row at step "
                    f"{self.global_step} (lr {lr:.3g}); lower the learning rate or use amp: bf16"
                )
            record = dict(type="step", step=self.global_step, epoch=epoch, loss=None, skipped=True, lr=lr)
        else:
            self.nonfinite_in_row = 0
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.model.before_optimizer_step(self.global_step)
            if self.recipe["clip_grad"]:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe["clip_grad"])
            self.scaler.step(self.optimizer)
            self.scaler.update()
            record = dict(type="step", step=self.global_step, epoch=epoch, loss=float(loss.detach()), lr=lr, **terms)
        if self.model.uses_momentum:
            momentum = ema_momentum(
                self.global_step,
                base=self.ema_base,
                total_steps=self.total_steps,
                schedule=self.recipe["ema_schedule"] or self.model.ema_schedule,
            )
            self.model.momentum_update(momentum)
            record["ema_momentum"] = momentum
        self.global_step += 1
        return record

    # --- the run -----------------------------------------------------------------------------------------------
    def run(self) -> None:
        start_epoch, skip_steps = self.resume()
        if self.rank == 0:
            with atomic_path(self.out_dir / "config.yaml") as tmp:
                tmp.write_text(yaml.safe_dump(self.experiment, sort_keys=False))
        # One bar for the whole run (its rate and time left are the run's), and one summary line per epoch. Closed
        # by `with` before a stop or an error is reported, so the job log still ends with that message.
        with progress(
            desc=self.experiment["name"],
            total=self.total_steps,
            initial=self.global_step,
            unit="step",
            disable=self.rank != 0,
        ) as bar:
            for epoch in range(start_epoch, self.recipe["epochs"]):
                self.run_epoch(epoch, skip_steps, bar)
                skip_steps = 0
                if (epoch + 1) % self.execution["save_every_epochs"] == 0 or epoch + 1 == self.recipe["epochs"]:
                    self.save_resume_point(epoch + 1, 0)
                self.stop_if_requested(epoch + 1, 0)
        if self.rank == 0:
            self.write_checkpoint()
            (self.out_dir / METRICS_PARTIAL).touch()  # no step ran with epochs 0 (the random-initialisation reference)
            # Copied, not moved: a rerun that resumes from the final resume point writes the same outputs again.
            with atomic_path(self.out_dir / METRICS_FILE) as tmp:
                shutil.copyfile(self.out_dir / METRICS_PARTIAL, tmp)

    def run_epoch(self, epoch: int, skip_steps: int, bar) -> None:
        """The steps of ``epoch`` from ``skip_steps`` on, each shown on ``bar`` with its loss and lr."""
        started, losses = time.perf_counter(), []
        for step_in_epoch, batch in enumerate(self._loader(epoch, skip_steps), start=skip_steps):
            record = self.step(batch, epoch)
            self.log_metrics(record)
            if record.get("loss") is not None:
                losses.append(record["loss"])
            bar.set_postfix(epoch=epoch + 1, loss=record["loss"], lr=record["lr"], refresh=False)
            bar.update()
            every = self.execution["save_every_steps"]
            if every and self.global_step % every == 0 and step_in_epoch + 1 < self.steps_per_epoch:
                self.save_resume_point(epoch, step_in_epoch + 1)
            self.stop_if_requested(epoch, step_in_epoch + 1)
        seconds = time.perf_counter() - started
        summary = dict(
            type="epoch",
            step=self.global_step,
            epoch=epoch,
            loss=float(np.mean(losses)) if losses else None,
            skipped_steps=self.skipped_steps,
            seconds=seconds,
            images_per_second=(self.steps_per_epoch - skip_steps) * self.recipe["batch_size"] / seconds,
        )
        self.log_metrics(summary)
        if self.rank == 0:
            log.info(
                "%s epoch %d/%d: mean loss %s, lr %.3g, %.1f images/s, %d step(s) skipped so far",
                self.experiment["name"],
                epoch + 1,
                self.recipe["epochs"],
                "none (every step skipped)" if summary["loss"] is None else f"{summary['loss']:.4f}",
                record["lr"],
                summary["images_per_second"],
                self.skipped_steps,
            )

    def stop_if_requested(self, epoch: int, step_in_epoch: int) -> None:
        """At the step boundary (``epoch``, ``step_in_epoch``): if a stop signal came (to any rank), save the resume
        point there and raise StopRequested. An epoch's end is handled after its record and save, and the last
        step lets the run finish."""
        if step_in_epoch == self.steps_per_epoch or epoch == self.recipe["epochs"] or self.stop_signals is None:
            return
        requested = float(self.stop_signals.received is not None)
        if distributed.is_distributed():  # every rank stops at the same step
            requested = distributed.all_reduce_mean(torch.tensor(requested, device=self.device)).item()
        if not requested:
            return
        self.save_resume_point(epoch, step_in_epoch)
        name = signal.Signals(self.stop_signals.received).name if self.stop_signals.received else "a signal"
        raise StopRequested(
            f"{self.experiment['name']}: {name} received: time limit reached; resubmit to continue (the workflow's "
            f"retries do; resume point at step {self.global_step} of {self.total_steps}, epoch {epoch}, saved in "
            f"{self.out_dir / RESUME_FILE})"
        )

    def write_checkpoint(self) -> None:
        if hasattr(self.model, "clamp_logit_scale"):  # CLIP clamps before each step; the last one too
            self.model.clamp_logit_scale()
        backbone = self.model.backbone[1]
        _save(
            dict(
                format=CHECKPOINT_FORMAT,
                experiment=self.experiment,
                backbone=backbone.state_dict(),
                method=self.model.state_dict(),
                feature_dim=self.model.feature_dim,
                steps=self.global_step,
                skipped_steps=self.skipped_steps,
            ),
            self.out_dir / "checkpoint.pt",
        )
        write_digest(self.out_dir / "checkpoint.pt")  # checked before the workflow plans its evaluations
        log.info(
            "%s: %d steps (%d skipped), checkpoint written",
            self.experiment["name"],
            self.global_step,
            self.skipped_steps,
        )


def _init_distributed() -> str | None:
    """Join the torchrun process group when launched by torchrun; returns the device for this rank."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        local_rank = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local_rank)
        return f"cuda:{local_rank}"
    return "cpu"


def train(
    experiment: dict,
    out_dir: str | Path,
    *,
    manifest: str,
    view_manifests: list[str],
    quality_vector: str | None = None,
    device: str = "cpu",
    execution: dict | None = None,
) -> None:
    distributed_device = _init_distributed()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with _StopSignals() as stop_signals:
            trainer = Trainer(
                experiment,
                out_dir,
                manifest=manifest,
                view_manifests=view_manifests,
                quality_vector=quality_vector,
                device=distributed_device or device,
                execution=execution,
            )
            trainer.stop_signals = stop_signals
            trainer.run()
            if distributed.is_distributed():
                # Gloo aborts a process whose peer tears its pairs down first: every rank leaves together. Inside
                # the stop-signal block: a signal while a finished rank waits here must not kill it.
                dist.barrier()
    finally:
        if distributed.is_distributed():
            dist.destroy_process_group()
