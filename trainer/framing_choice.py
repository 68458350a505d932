"""How a session is framed for its generator (trainer.framing), as the trainer chooses it: the job
frames a session with it, and a base model (trainer.base) frames each of its sessions the same way,
so that the base fits the sessions that warm-start from it.

`choose_framing` is the one-person choice: person-centred for pose maps (the person masks of the
training frames, each camera's background plate and crop size), the whole frame for part maps or
where no crop fits; the warp-conditioned person framing where asked (trainer.warp_framing). A
session of several visitors is framed as a group before this (trainer.group.group_framing).
`recipe` is the network and the recorded inputs that follow from a framing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from trainer.framing import DEFAULT_STYLES, WholeFrame
from trainer.options import TrainerConfig
from trainer.plates import PersonMasks, SessionPlates
from trainer.training_set import DatasetError, TrainingSet

NEITHER = "the temporal and face options are for the person framing: this session has neither"


@dataclass
class Framed:
    """A session's framing; the person masks of its training samples (index -> uint8 mask, 255 =
    person) or None; what to record about masks and plates; warnings on the way, in order."""

    framing: object
    masks: dict[int, np.ndarray] | None = None
    info: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @cached_property
    def recipe(self) -> tuple:
        """(NetConfig, what the model learns from) for this framing (`recipe`)."""
        return recipe(self.framing)


def choose_framing(
    data: TrainingSet,
    train: np.ndarray,
    representation: str,
    config: TrainerConfig,
    device: str,
    plates: SessionPlates,
    conditioning: str | None = None,
    progress: Callable[..., None] = lambda *a, **k: None,
) -> Framed:
    """Frame one person's session: train, the training samples (bool per sample); device, the type
    ("cuda" gets a 512 crop by default, else 256); plates, the session's plates and person masks
    as made so far (trainer.plates.SessionPlates: completed here); conditioning, None for the
    config's choice (trainer.warp_framing.chosen_conditioning); progress, the job's (phase, step,
    total, message=...)."""
    from trainer.warp_framing import chosen_conditioning

    cfg = config
    conditioning = conditioning or chosen_conditioning(cfg.conditioning, cfg.temporal)
    kind = cfg.framing
    if kind == "auto":
        kind = "person" if representation == "pose" else "whole"
    if kind == "person" and representation != "pose":
        raise DatasetError(
            f"session {plates.session} is in the {representation!r} representation: person-centred generation "
            "draws pose maps in the crop, so it needs the 'pose' representation (or train with framing whole)"
        )
    sizes = {c: data.camera_size(c) for c in data.camera_names()}
    whole = WholeFrame(data.size, cfg.posemap_style or DEFAULT_STYLES["whole"], representation, sizes)
    if kind == "whole":
        return Framed(whole, warnings=[NEITHER] if cfg.temporal or cfg.face else [])
    warnings: list[str] = []
    idx = np.flatnonzero(train)
    try:
        sides = {camera: _crop_side(data, idx, camera) for camera in sizes}
    except ValueError as exc:
        warnings.append(f"{exc}: the whole frame is used instead of a crop around the person")
        if cfg.temporal or cfg.face:
            warnings.append("the temporal and face options are for the person framing: not used")
        return Framed(whole, warnings=warnings)
    masks = plates.masks
    _person_masks(masks, idx, cfg.progress_every_s, warnings, progress)
    progress("loading", message="background plates")
    made = plates.estimated(train, warnings, sizes)
    framing = _person_framing(data, train, cfg, device, conditioning, masks.made, made, sides, warnings)
    info = {
        "person_masks": masks.masker.name,
        "plate_source": ",".join(sorted({p.source for p in made.values()})),
        "plate_filled": max(p.plate.filled for p in made.values()),
        "crop_side_px": round(sides[data.main_camera()], 1),
    }
    return Framed(framing, masks.made, info, warnings)


def _crop_side(data: TrainingSet, idx: np.ndarray, camera: str) -> float:
    from vision.crop import crop_side

    return crop_side(data.poses[idx[data.cameras[idx] == camera]])


def _person_masks(masks: PersonMasks, idx, every_s: float, warnings: list[str], progress) -> None:
    """The person masks of the samples idx made (those made already kept); what a person should
    know about them into warnings."""
    masker = masks.masker
    if masker.why:
        warnings.append(masker.why)
    last = time.monotonic()
    for k, i in enumerate(idx):
        masks.of(i)
        if time.monotonic() - last >= every_s:
            last = time.monotonic()
            progress("loading", k, len(idx), message=f"person masks ({masker.name}) {k}/{len(idx)}")
    if masker.fallbacks:
        warnings.append(
            f"BlazePose found nobody where the pose is in {masker.fallbacks} of {len(idx)} training frames: "
            "their masks are drawn from the pose"
        )
    cut = cut_off_share(masks.data, idx)
    if cut > 0.2:
        warnings.append(
            f"the person is cut off by the frame's edge in {cut:.0%} of the training frames: "
            "what lies outside is never learnt"
        )


def _person_framing(data, train, cfg: TrainerConfig, device, conditioning, masks, plates, sides, warnings):
    """The person-centred framing (temporal and face options as the config and crop allow), warp
    conditioned where asked and a view of the person to warp exists."""
    from trainer.coherent import CoherentPersonCentred
    from trainer.pix2pix.face import MIN_FACE_CROP

    crop = cfg.crop_size or (512 if device == "cuda" else 256)
    face = cfg.face
    if face and crop < MIN_FACE_CROP:
        face = False
        warnings.append(f"a {crop} px crop is too small for a face box (at least {MIN_FACE_CROP}): no face residual")
    framing = CoherentPersonCentred(
        crop,
        cfg.posemap_style or DEFAULT_STYLES["person"],
        {c: p.plate.image for c, p in plates.items()},
        sides,
        temporal=cfg.temporal,
        face=face,
    )
    if conditioning not in ("warp", "warp-reliable"):
        return framing
    from trainer.warp_framing import warp_framing

    try:
        warped = warp_framing(conditioning).from_person(framing, data, train, masks)
    except ValueError as exc:  # no view of the person to warp: the pose map alone
        warnings.append(f"{exc}: the generator reads the pose map alone")
        return framing
    # Not combined yet: the warped view carries the visitor's own face and appearance frame to
    # frame; metrics.json records temporal and face as off.
    if cfg.temporal:
        warnings.append("the temporal option is not combined with warp conditioning: not used")
    return warped


def cut_off_share(data: TrainingSet, idx: np.ndarray) -> float:
    """Share of the samples idx whose body box reaches past the frame's edge."""
    from vision.crop import body_box

    cut = 0
    for i in idx:
        box = body_box(data.poses[i])
        w, h = data.frame_size(int(i))
        cut += box is not None and (box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h)
    return cut / max(1, len(idx))


def recipe(framing) -> tuple:
    """(NetConfig, what the model learnt from) for a framing: the generator's inputs and outputs
    follow it. One place, so a base model built on earlier sessions (trainer.base) has exactly the
    network and the recorded inputs of a session that would warm-start from it."""
    from trainer.pix2pix.networks import NetConfig
    from trainer.pix2pix.sequence import in_channels

    temporal, face = bool(getattr(framing, "temporal", False)), bool(getattr(framing, "face", False))
    net = NetConfig.fast(
        framing.size,
        matte=framing.name == "person",
        in_channels=getattr(framing, "channels", in_channels(temporal)),
        residual=getattr(framing, "residual", None),
    )
    data_info = {
        "framing": framing.name,
        "posemap_style": framing.style,
        "size": framing.size,
        "temporal": temporal,
        "face": face,
    }
    if getattr(framing, "conditioning", "pose") != "pose":
        data_info["conditioning"] = framing.conditioning
    return net, data_info
