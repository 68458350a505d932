"""Training for temporal coherence and the face residual ("Everybody Dance Now" on top of pix2pix).

Temporal (TrainConfig.temporal): the generator's input is [pose map t, pose map t-1, frame t-1]
(9 channels, NetConfig.in_channels), all in frame t's person crop. A training sample is a pair of
consecutive frames; each step runs the generator twice, as EDN does:

    fake[t-1] = G(map[t-1], blank, blank)          # the first frame of a video has no previous
    fake[t]   = G(map[t], map[t-1], fake[t-1])     # or, with probability P_REAL, the real frame t-1

and the discriminator, conditioned on the same inputs, judges both: for frame t it sees the
previous frame next to the current one, so it is the temporal discriminator that punishes a
frame that does not follow from the last. Gradients flow through fake[t-1] into the first pass,
so the generator learns to make a previous frame it can continue from. Rendering is sequential
(trainer.coherent), each frame generated from the previous generated one.

Face (TrainConfig.face): the face pair of trainer.pix2pix.face trained in the same step on the
body's current frame (detached): L1 + LSGAN on the face box, its own optimizers.

Samples (trainer.coherent.CoherentPersonCentred) are 6-tuples: (inputs uint8 [S, S, C], frame,
plate, mask float32 [S, S], mask of the previous frame float32 [S, S] (temporal; else [0, 0]),
face box origin int [2] in crop pixels, NO_BOX for none). The rest of the loop (budgets,
checkpoints, exact resume, warm start) is trainer.pix2pix.train's.
"""

from __future__ import annotations

import numpy as np
import torch

from trainer.pix2pix import checkpoint as ckpt
from trainer.pix2pix import face as facemod
from trainer.pix2pix.data import PairSource, mask_tensor, to_tensor
from trainer.pix2pix.losses import discriminator_loss, generator_loss, matte_losses, reconstruction_loss
from trainer.pix2pix.networks import composite, split_matte
from trainer.pix2pix.train import TrainConfig, Trainer, TrainResult

P_REAL = 0.25  # share of steps that continue from the real previous frame instead of the generated one
TEMPORAL_CHANNELS = 9  # map t, map t-1, frame t-1
FACE_GENERATOR_NAME = "face_generator.pt"


def in_channels(temporal: bool) -> int:
    return TEMPORAL_CHANNELS if temporal else 3


class SequenceTrainer(Trainer):
    """Trainer for a matte generator with the temporal and/or face options (see the module)."""

    def __init__(self, dataset: PairSource, config: TrainConfig) -> None:
        if not config.net.matte:
            raise ValueError("temporal and face training are for the person framing's matte generator")
        if config.jitter or config.flip:
            raise ValueError("temporal and face training take no jitter or flip (the pair and the box must align)")
        want = in_channels(config.temporal)
        if config.net.in_channels != want:
            raise ValueError(f"a {'temporal' if config.temporal else 'plain'} generator reads {want} channels")
        super().__init__(dataset, config)
        self.prev_rng = np.random.default_rng([config.seed, 2])
        self.face_g = self.face_d = None
        if config.face:
            self.face_cfg, self.face_g, self.face_d = facemod.face_nets(config.net.size)
            self.face_g.to(self.device).train()
            self.face_d.to(self.device).train()
            betas = (config.beta1, config.beta2)
            self.opt_fg = torch.optim.Adam(self.face_g.parameters(), lr=config.lr, betas=betas)
            self.opt_fd = torch.optim.Adam(self.face_d.parameters(), lr=config.lr, betas=betas)

    def _check(self, i: int) -> tuple:
        sample = tuple(self.dataset[i])
        s, c = self.size, self.config.net.in_channels
        if len(sample) != 6:
            raise ValueError(f"sample {i} is not an (inputs, frame, plate, mask, previous mask, face box) sample")
        inputs, frame, plate, mask, prev_mask, origin = (np.asarray(a) for a in sample)
        for name, img, shape in (
            ("inputs", inputs, (s, s, c)),
            ("frame", frame, (s, s, 3)),
            ("plate", plate, (s, s, 3)),
        ):
            if img.dtype != np.uint8 or img.shape != shape:
                raise ValueError(f"sample {i}: {name} must be uint8 {shape}, got {img.dtype} {img.shape}")
        masks = (mask, prev_mask) if self.config.temporal else (mask,)
        for m in masks:
            if m.dtype != np.float32 or m.shape != (s, s):
                raise ValueError(f"sample {i}: masks must be float32 ({s}, {s}) in 0..1, got {m.dtype} {m.shape}")
        return inputs, frame, plate, mask, prev_mask, (int(origin[0]), int(origin[1]))

    def _batch(self) -> list:  # type: ignore[override]
        rows = [self._check(i) for i in self.order.take(self.config.batch_size)]
        inputs, frames, plates, masks, prev_masks, origins = zip(*rows)
        out = [to_tensor(np.stack(a), self.device) for a in (inputs, frames, plates)]
        out.append(mask_tensor(np.stack(masks), self.device))
        out.append(mask_tensor(np.stack(prev_masks), self.device) if self.config.temporal else None)
        out.append(list(origins))
        return out

    def train_step(self) -> dict[str, float]:
        cfg = self.config
        inputs, real, plate, mask, prev_mask, origins = self._batch()

        def autocast() -> torch.autocast:
            return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp)

        with autocast():
            if cfg.temporal:
                cur_map, prev_map, prev_real = inputs[:, :3], inputs[:, 3:6], inputs[:, 6:9]
                blank = torch.full_like(inputs[:, 3:], -1.0)  # black, as an all-zero uint8 picture
                first_in = torch.cat([prev_map, blank], 1)
                first_image, first_alpha = split_matte(self.G(first_in))
                first = composite(first_image, first_alpha, plate)
                prev = prev_real if self.prev_rng.random() < P_REAL else first
                pair_in = torch.cat([cur_map, prev_map, prev], 1)
                image, alpha = split_matte(self.G(pair_in))
                fake = composite(image, alpha, plate)
                # Both frames of the pair, judged as one batch; the real pair continues the real frame.
                cond_fake = torch.cat([first_in, pair_in])
                cond_real = torch.cat([first_in, torch.cat([cur_map, prev_map, prev_real], 1)])
                fakes, reals = torch.cat([first, fake]), torch.cat([prev_real, real])
                images, alphas = torch.cat([first_image, image]), torch.cat([first_alpha, alpha])
                masks = torch.cat([prev_mask, mask])
            else:
                cur_map = inputs
                image, alpha = split_matte(self.G(inputs))
                fake = composite(image, alpha, plate)
                cond_fake = cond_real = inputs
                fakes, reals, images, alphas, masks = fake, real, image, alpha, mask

        self.D.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        with autocast():
            loss_d = discriminator_loss(
                self.D(cond_real, reals), self.D(cond_fake.detach(), fakes.detach()), cfg.gan_mode
            )
        self.scaler.scale(loss_d).backward()
        self.scaler.step(self.opt_d)

        self.D.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        with autocast():
            loss_g, parts = generator_loss(
                self.D(cond_fake, fakes), fakes, reals, lambda_l1=cfg.lambda_l1, mode=cfg.gan_mode
            )
            extra = matte_losses(images, alphas, masks, reals)
            loss_g = loss_g + cfg.lambda_alpha * extra["g_alpha"] + cfg.lambda_fg * extra["g_fg"]
            parts.update({k: v.detach() for k, v in extra.items()})
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_g)
        self.D.requires_grad_(True)
        if self.face_g is not None:
            parts.update(self._face_step(cur_map, image.detach(), alpha.detach(), plate, real, origins))
        self.scaler.update()
        self.step += 1
        return {"d": float(loss_d.detach()), **{k: float(v) for k, v in parts.items()}}

    def _face_step(self, maps, image, alpha, plate, real, origins) -> dict:
        """One update of the face pair on the boxed samples of the batch (none boxed: no update)."""
        assert self.face_g is not None and self.face_d is not None
        cfg, side = self.config, self.face_cfg.size
        mine = [o for o in origins if o != facemod.NO_BOX]
        if not mine:
            return {}
        boxed = torch.tensor([o != facemod.NO_BOX for o in origins], dtype=torch.bool)
        fmap, flayer = facemod.take(maps[boxed], mine, side), facemod.take(image[boxed], mine, side)
        falpha, fplate = facemod.take(alpha[boxed], mine, side), facemod.take(plate[boxed], mine, side)
        freal = facemod.take(real[boxed], mine, side)
        cond = torch.cat([fmap, flayer], 1)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            res = facemod.residual(self.face_g, fmap, flayer, side)
            ffake = composite((flayer + res).clamp(-1, 1), falpha, fplate)
            self.opt_fd.zero_grad(set_to_none=True)
            loss_d = discriminator_loss(self.face_d(cond, freal), self.face_d(cond, ffake.detach()), cfg.gan_mode)
        self.scaler.scale(loss_d).backward()
        self.scaler.step(self.opt_fd)
        self.face_d.requires_grad_(False)
        self.opt_fg.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            loss_g, parts = generator_loss(
                self.face_d(cond, ffake), ffake, freal, lambda_l1=cfg.lambda_l1, mode=cfg.gan_mode
            )
        self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_fg)
        self.face_d.requires_grad_(True)
        before = reconstruction_loss(composite(flayer, falpha, fplate), freal)
        return {"f_d": loss_d.detach(), "f_gan": parts["g_gan"], "f_l1": parts["g_l1"], "f_l1_body": before.detach()}

    # -- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["rng"]["previous"] = self.prev_rng.bit_generator.state
        if self.face_g is not None:
            state.update(
                face_net=self.face_cfg.to_dict(),
                face_generator=self.face_g.state_dict(),
                face_discriminator=self.face_d.state_dict(),  # type: ignore[union-attr]
                opt_face_g=self.opt_fg.state_dict(),
                opt_face_d=self.opt_fd.state_dict(),
            )
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if "previous" in state["rng"]:
            self.prev_rng.bit_generator.state = state["rng"]["previous"]
        if self.face_g is not None:
            if "face_generator" not in state:
                raise ValueError("cannot resume a face-trained run from a checkpoint without the face networks")
            self.face_g.load_state_dict(state["face_generator"])
            self.face_d.load_state_dict(state["face_discriminator"])  # type: ignore[union-attr]
            self.opt_fg.load_state_dict(state["opt_face_g"])
            self.opt_fd.load_state_dict(state["opt_face_d"])

    def warm_start(self, data: bytes | str) -> None:
        """The body networks from a base (as Trainer); its face networks too, when it has them."""
        super().warm_start(data)
        state = ckpt.from_bytes(data)
        if self.face_g is not None and "face_generator" in state and state.get("face_net") == self.face_cfg.to_dict():
            self.face_g.load_state_dict(state["face_generator"])
            self.face_d.load_state_dict(state["face_discriminator"])  # type: ignore[union-attr]

    def save(self, store: ckpt.CheckpointStore, export: bool = False) -> str:
        name = super().save(store, export=export)
        if export and self.face_g is not None:
            store.save(FACE_GENERATOR_NAME, ckpt.export_generator(self.face_g))
        return name

    def generator(self) -> torch.nn.Module:
        """The generator to render with: the body's, with the face generator when trained."""
        if self.face_g is None:
            return self.G.eval()
        return facemod.FaceRefined(self.G, self.face_g).eval()

    def run(self, **kwargs) -> TrainResult:  # type: ignore[override]
        if self.face_g is not None:
            self.face_g.train()
        result = super().run(**kwargs)
        result.generator = self.generator()
        return result
