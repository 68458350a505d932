"""The trainer's options, one object per concern: TrainerConfig for the job (budget, framing,
held-out split, versions: `booth train`'s options), from which the training loop's own
(trainer.pix2pix.train.TrainConfig) and the network's (trainer.pix2pix.networks.NetConfig, chosen by
the framing: trainer.framing_choice.recipe) follow."""

from __future__ import annotations

from dataclasses import dataclass

from trainer.framing import FRAMINGS
from trainer.group import parse_match
from trainer.progressive import DEFAULT_FIRST_S, DEFAULT_POINTS, check_points
from trainer.training_set import DEFAULT_HOLDOUT_FRACTION, DEFAULT_HOLDOUT_GAP, DEFAULT_SPLIT, SPLITS

CUDA_BATCH = 8  # samples per step on a GPU: a 512 crop's fast networks use a few GiB (not yet measured on a card)


@dataclass(frozen=True)
class TrainerConfig:
    budget_s: float = 3600.0  # wall clock for fine-tuning one session
    checkpoint_every_s: float = 180.0
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION  # of each camera's session, held out
    holdout_gap: int = DEFAULT_HOLDOUT_GAP  # frames between training and held-out ones, used for neither
    holdout: str = DEFAULT_SPLIT  # "novel": the poses least like the rest held out; "tail": the last frames
    framing: str = "auto"  # "person", "whole", or "auto" (person for pose maps, whole for part maps)
    crop_size: int | None = None  # person framing's generator size: None = 512 where CUDA is, else 256
    batch_size: int | None = None  # None: CUDA_BATCH where CUDA is (float16 autocast there), else 1
    posemap_style: str | None = None  # None: the framing's default (vision.posemap STYLES)
    person_masks: str = "auto"  # vision.personmask: "auto", "blazepose" or "silhouette"
    # Person framing only (trainer.coherent): frames conditioned on the previous one; a face residual.
    # Defaults from bench.bench_temporal (docs/generation.md): on a CPU budget temporal training halves the steps
    # and loses on every figure; the face residual costs ~4% of a step and sharpens the face box.
    temporal: bool = False
    face: bool = True
    # The generator reads the pose map ("pose") or also the visitor warped to the pose ("warp"), with
    # maps of where that warp is unreliable ("warp-reliable", trainer.warp_reliability);
    # None: what the session's manifest asks for (the assembler's --conditioning), else "pose".
    conditioning: str | None = None
    reference: str | None = None  # used when the session names none (else settings.default_reference)
    side_by_side: bool = True
    max_render_frames: int | None = None
    progress_every_s: float = 1.0
    device: str | None = None
    progress_bar: bool = True
    rendition_points: tuple[float, ...] = DEFAULT_POINTS  # shares of the budget with a version (trainer.progressive)
    first_rendition_s: float | None = DEFAULT_FIRST_S  # a first version after this much training; None: none
    match: str | None = None  # several visitors: "dancer:visitor,..." instead of left to right (trainer.group)

    def __post_init__(self) -> None:
        check_points(self.rendition_points)
        from vision.personmask import KINDS
        from vision.posemap import check_style

        if self.match is not None:
            parse_match(self.match)
        if self.framing not in ("auto", *FRAMINGS):
            raise ValueError(f"unknown framing {self.framing!r}; choose auto, {', '.join(FRAMINGS)}")
        if self.crop_size is not None and (self.crop_size < 16 or self.crop_size & (self.crop_size - 1)):
            raise ValueError(f"the crop size must be a power of two of at least 16, got {self.crop_size}")
        if self.posemap_style is not None:
            check_style(self.posemap_style)
        from trainer.warp_framing import CONDITIONINGS

        if self.conditioning is not None and self.conditioning not in CONDITIONINGS:
            raise ValueError(f"unknown conditioning {self.conditioning!r}; choose one of {', '.join(CONDITIONINGS)}")
        if self.conditioning not in (None, "pose") and self.framing == "whole":
            raise ValueError(
                f"{self.conditioning} conditioning moves the visitor's pixels into the person's crop: "
                "use framing person"
            )
        if self.holdout not in SPLITS:
            raise ValueError(f"unknown held-out split {self.holdout!r}; choose one of {', '.join(SPLITS)}")
        if self.person_masks not in KINDS:
            raise ValueError(f"unknown person mask source {self.person_masks!r}; choose one of {', '.join(KINDS)}")

    def loop(self, net, data: dict, device: str):
        """The training loop's options (trainer.pix2pix.train.TrainConfig) for a network and what it
        learns from (framing_choice.recipe), on a device type ("cuda", "cpu", ...)."""
        from trainer.pix2pix.train import TrainConfig

        return TrainConfig(
            net=net,
            batch_size=self.batch_size or (CUDA_BATCH if device == "cuda" else 1),
            amp=True,  # float16 autocast and a gradient scaler, on CUDA only (trainer.pix2pix.train)
            checkpoint_every_s=self.checkpoint_every_s,
            device=self.device,
            progress_bar=self.progress_bar,
            data=data,
            temporal=data["temporal"],
            face=data["face"],
        )
