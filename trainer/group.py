"""Several people in one session, on the training side: how their frames are framed, and which
reference dancer each of them dances (the slots and the visitor count come with the dataset:
dataset.people).

A session of several visitors trains on whole frames with every person drawn (the two-person
recipe of the paper); the person-centred crop follows one body and stays the one-person path.

Dancers and visitors. A multi-person reference stores every dancer (trainer.references). Dancer
k is matched to visitor k left to right: both are ordered by where they stand (mean x) in their
first frames. `--match 1:0,0:1` (dancer:visitor) overrides it. A dancer without a visitor is left
out with a warning; a visitor without a dancer is left out of the rendition (the generator draws
what its pose map shows, so a person with no pose is simply not there) with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from dataset.people import mean_x
from schemas.keypoints import NUM_KEYPOINTS
from vision.posemap import render_people_map

log = logging.getLogger(__name__)


def visitor_positions(people: Sequence[np.ndarray], slots: Sequence[np.ndarray], first: int = 30) -> dict[int, float]:
    """Each visitor slot's mean x over the first `first` samples it appears in."""
    xs: dict[int, list[float]] = {}
    for pp, ss in zip(people, slots):
        for pose, s in zip(pp, ss):
            got = xs.setdefault(int(s), [])
            if len(got) < first:
                x = mean_x(pose)
                if np.isfinite(x):
                    got.append(x)
    return {s: float(np.mean(v)) for s, v in xs.items() if v}


def dancer_positions(dancers: np.ndarray, first: int = 30) -> list[float]:
    """Each dancer's mean x over the first `first` frames they appear in; dancers [T, D, 17, 3]."""
    out = []
    for d in range(dancers.shape[1]):
        xs = [x for x in (mean_x(p) for p in dancers[:, d]) if np.isfinite(x)][:first]
        out.append(float(np.mean(xs)) if xs else float("nan"))
    return out


def parse_match(text: str) -> dict[int, int]:
    """ "1:0,0:1" -> {dancer: visitor}; a clear error for anything else."""
    out: dict[int, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            d, v = (int(x) for x in part.split(":"))
        except ValueError:
            raise ValueError(f"a match is dancer:visitor pairs like 1:0,0:1; {part!r} is not one") from None
        if d < 0 or v < 0:
            raise ValueError(f"dancers and visitors are numbered from 0, got {part!r}")
        if d in out:
            raise ValueError(f"dancer {d} is matched twice in {text!r}")
        out[d] = v
    if len(set(out.values())) != len(out):
        raise ValueError(f"a visitor is matched to two dancers in {text!r}")
    return out


def match_dancers(
    dancer_x: Sequence[float], visitor_x: dict[int, float], override: dict[int, int] | None = None
) -> tuple[dict[int, int], list[str]]:
    """({dancer: visitor slot}, warnings): left to right unless override says otherwise."""
    warnings = []
    if override:
        bad = [d for d in override if d >= len(dancer_x)]
        if bad:
            raise ValueError(f"the match names dancers {bad}, but the reference has {len(dancer_x)}")
        unknown = [v for v in override.values() if v not in visitor_x]
        if unknown:
            raise ValueError(f"the match names visitors {unknown}, but the session has {sorted(visitor_x)}")
        match = dict(override)
    else:
        dancers = sorted(range(len(dancer_x)), key=lambda d: (np.nan_to_num(dancer_x[d], nan=np.inf), d))
        visitors = sorted(visitor_x, key=lambda s: (visitor_x[s], s))
        match = dict(zip(dancers, visitors))
    for d in range(len(dancer_x)):
        if d not in match:
            warnings.append(f"reference dancer {d} has no visitor to dance it: left out")
    for s in sorted(set(visitor_x) - set(match.values())):
        warnings.append(f"visitor {s} has no reference dancer: left out of the rendition")
    return match, warnings


# --- training and rendition on whole frames --------------------------------------------------------
class GroupFrame:
    """Whole frames with every person drawn in their slot's palette (trainer.framing.WholeFrame
    for several people). `poses` handed to frames() are [T, P, 17, 3] with `slots` [P]."""

    name = "whole"

    def __init__(self, size: int, style: str, sizes: dict[str, tuple[int, int]], slots: Sequence[int]):
        self.size, self.style, self.sizes = size, style, sizes
        self.slots = np.asarray(slots, np.int64)
        self.representation = "pose"

    def input_map(self, people: np.ndarray, slots: np.ndarray, src_size: tuple[int, int]) -> np.ndarray:
        return render_people_map(people, slots, src_size, self.size, style=self.style)

    def training_samples(self, data, idx: np.ndarray, masks: dict | None = None) -> Sequence:
        from trainer.lazy_samples import Lazy as _Lazy
        from vision.posemap import letterbox_image

        idx = np.asarray(idx)

        def make(j: int) -> tuple[np.ndarray, np.ndarray]:
            i = int(idx[j])
            return (
                self.input_map(data.people[i], data.slots[i], data.frame_size(i)),
                letterbox_image(data.frames[i], self.size),
            )

        return _Lazy(len(idx), make)

    def frames(
        self, generator, poses: np.ndarray, camera: str, maps: Sequence[np.ndarray] | None = None, batch_size: int = 8
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(frame at the camera's size, the input map un-letterboxed) per frame of people."""
        from trainer.lazy_samples import batched as _batched
        from trainer.pix2pix.inference import generate_batches
        from vision.posemap import unletterbox

        src = self.sizes[camera]
        poses = np.asarray(poses, np.float32)
        stored = poses.ndim == 3 and maps is not None and self.style == "stick"
        if poses.ndim == 3:
            # Evaluation hands the main pose of each held-out sample with its stored map, which
            # shows everyone (drawn by the assembler in the stick style at this size); without
            # the maps only the main person can be drawn.
            poses, slots = poses[:, None], np.zeros(1, np.int64)
        else:
            slots = self.slots

        def make(i: int) -> np.ndarray:
            if stored:
                m = np.asarray(maps[i])  # type: ignore[index]
                if m.shape[:2] == (self.size, self.size):
                    return m
            return self.input_map(poses[i], slots, src)

        for batch in _batched(len(poses), batch_size):
            inputs = np.stack([make(i) for i in batch])
            (fakes,) = list(generate_batches(generator, [inputs]))
            for m, f in zip(inputs, fakes):
                yield unletterbox(f, src), unletterbox(m, src)


def group_framing(manifest: dict, data, representation: str, framing: str = "auto", style: str | None = None):
    """(GroupFrame, None, what to record) for a session of several visitors trained as a group,
    else None (the one-person choice stands). An explicit person framing keeps the main person
    alone; part representations have no multi-person maps."""
    people = int(manifest.get("people", 1))
    if people <= 1 or data.people is None:
        return None
    if framing == "person" or representation != "pose":
        why = "person framing asked for" if framing == "person" else f"the {representation} representation"
        log.warning("%d visitors, but %s: the main person alone is trained", people, why)
        return None
    sizes = {c: data.camera_size(c) for c in data.camera_names()}
    seen = sorted({int(k) for ss in data.slots for k in ss})
    info = {
        "people": people,
        "slots": seen,
        "framing_choice": f"whole frames with every person drawn: the session has {people} visitors "
        f"(the person-centred crop follows one body)",
    }
    return GroupFrame(data.size, style or "stick", sizes, seen), None, info


@dataclass
class GroupDance:
    """The reference dancers normalized onto their visitors: poses [T, P, 17, 3], person p in
    slot slots[p]; the same fields trainer.dance.Dance has, for the job's rendering."""

    name: str
    ref: object
    poses: np.ndarray
    slots: np.ndarray
    maps: None = None
    note: str = ""
    match: dict[int, int] = field(default_factory=dict)


def build_group_dance(
    ref,
    name: str,
    data,
    camera: str,
    override: dict[int, int] | None = None,
    max_frames: int | None = None,
    slots: Sequence[int] | None = None,
) -> GroupDance:
    """Each matched dancer normalized to their visitor (trainer.normalize, fitted on that
    visitor's poses of `camera`), all in one sequence of frames: poses [T, len(slots), 17, 3] in
    the order of `slots` (default: the visitors of `camera`, ascending); a visitor without a
    dancer has scores of 0 throughout, which no pose map draws."""
    from trainer.normalize import fit_body_normalizer, fit_normalizer

    dancers = ref_dancers(ref)
    if max_frames:
        dancers = dancers[:max_frames]
    mine = np.flatnonzero(data.cameras == camera)
    people = [data.people[i] for i in mine]
    visitors = [data.slots[i] for i in mine]
    positions = visitor_positions(people, visitors)
    match, notes = match_dancers(dancer_positions(dancers), positions, override)
    if not match:
        raise ValueError("no reference dancer could be matched to a visitor")
    order = [int(k) for k in (sorted(positions) if slots is None else slots)]
    poses = np.zeros((len(dancers), len(order), NUM_KEYPOINTS, 3), np.float32)
    for d, v in sorted(match.items(), key=lambda dv: dv[1]):
        if v not in order:
            notes.append(f"visitor {v} has no palette in this generator: dancer {d} left out")
            continue
        target = np.stack([pp[list(ss).index(v)] for pp, ss in zip(people, visitors) if v in ss])
        try:
            normalizer = fit_normalizer(dancers[:, d], target)
        except ValueError as exc:
            notes.append(f"visitor {v}: {exc}: placed and sized by the body")
            normalizer = fit_body_normalizer(dancers[:, d], target)  # type: ignore[assignment]
        poses[:, order.index(v)] = np.stack([normalizer.apply(p) for p in dancers[:, d]])
    for n in notes:
        log.warning("%s", n)
    return GroupDance(name, ref, poses, np.asarray(order, np.int64), None, "; ".join(notes), match)


def ref_dancers(ref) -> np.ndarray:
    """A reference's dancers [T, D, 17, 3] (one-dancer references: their one pose sequence)."""
    poses = np.asarray(ref.poses, np.float32)
    dancers = getattr(ref, "dancers", None)
    if dancers is None:
        return poses[:, None]
    dancers = np.array(dancers, np.float32)
    if len(dancers) == len(poses):
        dancers[:, 0] = poses  # poses.npz is dancer 0 with any manual corrections
    return dancers
