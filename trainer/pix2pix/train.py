"""The pix2pix training loop: wall-clock budgets, checkpoints, exact resume, warm start.

`fine_tune` adapts a base model to one visitor within a time budget; `train_base` runs the same
loop from scratch. Both go through `Trainer`, which can also be stepped by hand.

Budget: the deadline is `budget_s` after the call. Before each step the loop checks that the
step (the slowest of the last five, times `step_margin`) and the final save (as long as the run's
first save took) still fit; the first step of a run has no estimate yet, so only that one can
overrun. Resume: a checkpoint holds both networks, both optimizers, the AMP scaler, the step,
the data-order position and the torch / numpy / python RNG states, so a resumed run takes exactly
the step the interrupted one would have taken (bit for bit on CPU).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from trainer.pix2pix import checkpoint as ckpt
from trainer.pix2pix.data import PairSource, SampleOrder, augment_layers, check_sample, mask_tensor, to_tensor
from trainer.pix2pix.losses import (
    DEFAULT_LAMBDA_ALPHA,
    DEFAULT_LAMBDA_FG,
    GAN_MODES,
    discriminator_loss,
    generator_loss,
    matte_losses,
)
from trainer.pix2pix.networks import NetConfig, build_networks, composite, split_matte

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, dict, float], None]  # (step, total_est, losses, eta_s)


@dataclass(frozen=True)
class TrainConfig:
    net: NetConfig = field(default_factory=NetConfig.fast)
    batch_size: int = 1
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_l1: float = 100.0
    lambda_alpha: float = DEFAULT_LAMBDA_ALPHA  # matte generators (losses.matte_losses)
    lambda_fg: float = DEFAULT_LAMBDA_FG
    gan_mode: str = "lsgan"  # or "bce" (see losses.py)
    seed: int = 0
    jitter: int = 0  # random shift in px, the same for map and frame
    flip: bool = False  # random mirror of both (see data.augment)
    max_steps: int | None = None
    checkpoint_every_s: float | None = 120.0
    checkpoint_every_steps: int | None = None
    keep_checkpoints: int = 2  # older ones are deleted when the store can delete
    progress_every: int = 1
    progress_bar: bool = False  # a tqdm bar on stderr
    device: str | None = None  # None: CUDA when available, else CPU
    amp: bool = True  # float16 autocast + GradScaler; CUDA only
    step_margin: float = 1.15  # safety factor on the step-time estimate
    # Everybody Dance Now's additions (trainer.pix2pix.sequence): frames conditioned on the previous
    # one, trained on pairs (net.in_channels 9); a face residual generator on the head's box.
    temporal: bool = False
    face: bool = False
    # What the inputs are, recorded in every checkpoint (the loop does not read it): e.g.
    # {"framing": "person", "posemap_style": "facing", "crop_size": 256}. A generator must be fed
    # what it learnt from, and a warm start must come from a model that learnt the same.
    data: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.gan_mode not in GAN_MODES:
            raise ValueError(f"gan_mode must be one of {GAN_MODES}, got {self.gan_mode!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Inverse of to_dict (e.g. a job message's JSON); unknown keys are an error."""
        data = dict(data)
        net = data.pop("net", None)
        try:
            return cls(**data, **({"net": NetConfig.from_dict(net)} if net is not None else {}))
        except TypeError as e:
            raise ValueError(f"bad training config: {e}") from None


@dataclass
class TrainResult:
    generator: torch.nn.Module  # in eval mode
    step: int  # steps taken in total, earlier runs included
    steps_this_run: int
    elapsed_s: float
    stop_reason: str  # "budget", "max_steps" or "stopped"
    checkpoint: str | None  # name of the last checkpoint saved in the store
    history: list[dict]  # one {"step", "d", "g_gan", "g_l1", "step_s"} per step, all runs


def pick_device(requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Trainer:
    def __init__(self, dataset: PairSource, config: TrainConfig = TrainConfig()) -> None:
        self.config = config
        self.dataset = dataset
        self.size = config.net.size
        if len(dataset) == 0:
            raise ValueError("the dataset is empty")
        self.matte = config.net.matte
        self._check(0)
        self.device = pick_device(config.device)
        self.amp = config.amp and self.device.type == "cuda"
        # Seed everything so two fresh runs with one config match; a resume overwrites it all.
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)
        random.seed(config.seed)
        self.G, self.D = build_networks(config.net)
        self.G.to(self.device).train()
        self.D.to(self.device).train()
        betas = (config.beta1, config.beta2)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=config.lr, betas=betas)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.order = SampleOrder(len(dataset), config.seed)
        self.aug_rng = np.random.default_rng([config.seed, 1])
        self.step = 0
        self.elapsed_s = 0.0  # training time over all runs
        self.history: list[dict] = []
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    # -- one step ---------------------------------------------------------------------------

    def _check(self, i: int) -> tuple[np.ndarray, ...]:
        return check_sample(self.dataset[i], self.size, i, layered=self.matte, in_channels=self.config.net.in_channels)

    def _batch(self) -> list[torch.Tensor]:
        """(maps, frames) or, for a matte generator, (maps, frames, plates, masks) as tensors."""
        edges = (False, True, True, False)
        layers: list[list[np.ndarray]] = []
        for i in self.order.take(self.config.batch_size):
            sample = augment_layers(
                self._check(i), edges, self.aug_rng, jitter=self.config.jitter, flip=self.config.flip
            )
            layers.append(list(sample))
        stacked = [np.stack(column) for column in zip(*layers)]
        out = [to_tensor(a, self.device) for a in stacked[:3]]
        if self.matte:
            out.append(mask_tensor(stacked[3], self.device))
        return out

    def train_step(self) -> dict[str, float]:
        """One D update then one G update on the next batch; returns the step's losses."""
        cfg = self.config
        batch = self._batch()
        pose, real = batch[0], batch[1]

        def autocast() -> torch.autocast:
            return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp)

        with autocast():
            out = self.G(pose)
            if self.matte:
                image, alpha = split_matte(out)
                fake = composite(image, alpha, batch[2])
            else:
                fake = out

        self.D.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        with autocast():
            loss_d = discriminator_loss(self.D(pose, real), self.D(pose, fake.detach()), cfg.gan_mode)
        self.scaler.scale(loss_d).backward()
        self.scaler.step(self.opt_d)

        self.D.requires_grad_(False)  # G's update needs gradients through D, not for D
        self.opt_g.zero_grad(set_to_none=True)
        with autocast():
            loss_g, parts = generator_loss(self.D(pose, fake), fake, real, lambda_l1=cfg.lambda_l1, mode=cfg.gan_mode)
            if self.matte:
                extra = matte_losses(image, alpha, batch[3], real)
                loss_g = loss_g + cfg.lambda_alpha * extra["g_alpha"] + cfg.lambda_fg * extra["g_fg"]
                parts.update({k: v.detach() for k, v in extra.items()})
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        self.D.requires_grad_(True)
        self.step += 1
        return {"d": float(loss_d.detach()), **{k: float(v) for k, v in parts.items()}}

    # -- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        np_state = np.random.get_state()
        py_state = random.getstate()
        return {
            "format_version": ckpt.FORMAT_VERSION,
            "net": self.config.net.to_dict(),
            "train": {k: v for k, v in self.config.to_dict().items() if k != "net"},
            "generator": self.G.state_dict(),
            "discriminator": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "elapsed_s": self.elapsed_s,
            "order": {"epoch": self.order.epoch, "position": self.order.position, "n": self.order.n},
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                # Plain ints and lists, so the checkpoint loads with weights_only.
                "numpy": [np_state[0], np_state[1].tolist(), *(v for v in np_state[2:])],
                "python": [py_state[0], list(py_state[1]), py_state[2]],
                "augment": self.aug_rng.bit_generator.state,
            },
            "history": self.history,
        }

    def load_state_dict(self, state: dict) -> None:
        self._check_net(state, "resume from")
        n = state["order"]["n"]
        if n != len(self.dataset):
            raise ValueError(f"checkpoint was trained on {n} samples but the dataset has {len(self.dataset)}")
        self.G.load_state_dict(state["generator"])
        self.D.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.elapsed_s = float(state["elapsed_s"])
        self.order = SampleOrder(n, self.config.seed, state["order"]["epoch"], state["order"]["position"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        npst = rng["numpy"]
        np.random.set_state((npst[0], np.asarray(npst[1], dtype=np.uint32), *npst[2:]))
        random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
        self.aug_rng.bit_generator.state = rng["augment"]
        self.history = list(state.get("history", []))

    def _check_net(self, state: dict, what: str) -> None:
        theirs = NetConfig.from_dict(state["net"])
        if theirs != self.config.net:
            diff = {
                k: (v, getattr(self.config.net, k))
                for k, v in theirs.to_dict().items()
                if getattr(self.config.net, k) != v
            }
            raise ValueError(f"cannot {what} a checkpoint of another architecture: (theirs, ours) = {diff}")

    def save(self, store: ckpt.CheckpointStore, export: bool = False) -> str:
        """Save a training checkpoint (and with export, `generator.pt` too); returns its name."""
        name = ckpt.checkpoint_name(self.step)
        store.save(name, ckpt.to_bytes(self.state_dict()))
        if export:
            store.save(ckpt.GENERATOR_NAME, ckpt.export_generator(self.G))
        if hasattr(store, "delete") and self.config.keep_checkpoints > 0:
            for _, old in ckpt.checkpoint_steps(store)[: -self.config.keep_checkpoints]:
                store.delete(old)
        return name

    def restore(self, store: ckpt.CheckpointStore) -> str | None:
        """Load the newest checkpoint in the store, if any; returns its name."""
        name = ckpt.latest_checkpoint(store)
        if name is None:
            return None
        data = store.load(name)
        if data is None:
            raise RuntimeError(f"checkpoint {name} is listed but could not be loaded")
        self.load_state_dict(ckpt.from_bytes(data))
        return name

    def warm_start(self, data: bytes | str) -> None:
        """Start from a base model's generator and discriminator weights (fresh optimizers)."""
        state = ckpt.from_bytes(data)
        self._check_net(state, "warm start from")
        self.G.load_state_dict(state["generator"])
        if "discriminator" in state:
            self.D.load_state_dict(state["discriminator"])
        else:
            log.warning("base checkpoint has no discriminator; it starts from scratch")

    # -- the loop ---------------------------------------------------------------------------

    def run(
        self,
        *,
        budget_s: float | None = None,
        store: ckpt.CheckpointStore | None = None,
        progress_cb: ProgressCallback | None = None,
        max_steps: int | None = None,
        started: float | None = None,
        export: bool = True,
        should_stop: Callable[[], bool] | None = None,
    ) -> TrainResult:
        """Train until the budget (seconds from `started`, default now) or max_steps (total
        steps, earlier runs included) runs out; checkpoints to `store` on the way and at the end.

        With export, the first and the final save also write `generator.pt`; the first one
        measures how long that takes, and that much time is kept for the final one. should_stop
        ends the run early (stop_reason "stopped"), with a checkpoint as at the end of a budget."""
        cfg = self.config
        max_steps = max_steps if max_steps is not None else cfg.max_steps
        if budget_s is None and max_steps is None:
            raise ValueError("give a budget_s or max_steps, or training never ends")
        t0 = started if started is not None else time.monotonic()
        self.G.train()
        deadline = t0 + budget_s if budget_s is not None else math.inf
        recent: deque[float] = deque(maxlen=5)
        save_s = 0.0
        exported_step: int | None = None
        last_name: str | None = None
        last_save_t, last_save_step = time.monotonic(), self.step
        steps_run, reason = 0, "max_steps"
        bar = None
        if cfg.progress_bar:
            from infra.progress import bar as progress_bar

            bar = progress_bar(total=max_steps, initial=self.step, unit="step", desc="training")

        def estimate() -> int:
            est_step = max(recent) if recent else 0.0
            left = (deadline - time.monotonic() - save_s) / max(est_step, 1e-9) if recent else 0
            by_time = self.step + max(0, int(left)) if deadline < math.inf else math.inf
            return int(min(by_time, max_steps if max_steps is not None else math.inf))

        try:
            while True:
                if max_steps is not None and self.step >= max_steps:
                    reason = "max_steps"
                    break
                if should_stop is not None and should_stop():
                    reason = "stopped"
                    break
                need = (max(recent) * cfg.step_margin if recent else 0.0) + (save_s if store else 0.0)
                # A run takes at least one step: setting up (building the networks, a resume) can eat
                # a short budget on a loaded machine, and a run with no step trains nothing.
                if steps_run > 0 and time.monotonic() + need > deadline:
                    reason = "budget"
                    break
                ts = time.monotonic()
                losses = self.train_step()
                dt = time.monotonic() - ts
                recent.append(dt)
                steps_run += 1
                self.elapsed_s += dt
                self.history.append({"step": self.step, **losses, "step_s": dt})

                if store is not None and self._checkpoint_due(steps_run, last_save_t, last_save_step):
                    ts = time.monotonic()
                    last_name = self.save(store, export=export and steps_run == 1)
                    if steps_run == 1:
                        save_s = time.monotonic() - ts
                        exported_step = self.step if export else None
                    last_save_t, last_save_step = time.monotonic(), self.step

                if steps_run % max(1, cfg.progress_every) == 0 or bar is not None:
                    total = estimate()
                    eta = (total - self.step) * (sum(recent) / len(recent))
                    if bar is not None:
                        bar.total = total if total < math.inf else None
                        bar.set_postfix(l1=f"{losses['g_l1']:.3f}", d=f"{losses['d']:.3f}", refresh=False)
                        bar.update(1)
                    if progress_cb is not None and steps_run % max(1, cfg.progress_every) == 0:
                        progress_cb(self.step, total, losses, eta)
        finally:
            if bar is not None:
                bar.close()

        if store is not None:
            if steps_run > 0 and last_save_step != self.step:
                last_name = self.save(store, export=export)
            elif export and exported_step != self.step:
                store.save(ckpt.GENERATOR_NAME, ckpt.export_generator(self.G))
        self.G.eval()
        return TrainResult(self.G, self.step, steps_run, time.monotonic() - t0, reason, last_name, self.history)

    def _checkpoint_due(self, steps_run: int, last_t: float, last_step: int) -> bool:
        cfg = self.config
        if steps_run == 1:  # early: guards against a crash and measures how long a save takes
            return True
        if cfg.checkpoint_every_steps and self.step - last_step >= cfg.checkpoint_every_steps:
            return True
        return bool(cfg.checkpoint_every_s) and time.monotonic() - last_t >= cfg.checkpoint_every_s
