"""Manual corrections of a reference dance's poses, from a hand-editable CSV file.

One row per edit; blank lines and lines starting with '#' are ignored, a header row is optional:

    frame,keypoint,x,y        # put that keypoint of that frame at (x, y) source pixels
    12,left_wrist,311.5,140
    40,drop                   # the frame's estimate is unusable: it is filled from its neighbours

A corrected keypoint is exact: it is kept as given in the result and feeds the smoothing of the
frames around it.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

import numpy as np

from schemas.keypoints import COCO17, INDEX


@dataclass
class Corrections:
    points: dict[tuple[int, int], tuple[float, float]] = field(default_factory=dict)  # (frame, kp) -> xy
    drops: set[int] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.points) + len(self.drops)


def parse_corrections(text: str, n_frames: int, src_size: tuple[int, int], source: str = "corrections") -> Corrections:
    """Parse and check a corrections file against a reference of n_frames frames of src_size."""
    w, h = src_size
    out = Corrections()
    lines = [
        (i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip() and not line.lstrip().startswith("#")
    ]
    for number, line in lines:
        where = f"{source}:{number}"
        row = [cell.strip() for cell in next(csv.reader(io.StringIO(line)))]
        if row and row[0].lower() == "frame":
            continue  # a header
        try:
            frame = int(row[0])
        except (ValueError, IndexError):
            raise ValueError(f"{where}: the first column must be a frame number, got {row[:1]}") from None
        if not 0 <= frame < n_frames:
            raise ValueError(f"{where}: frame {frame} is outside the reference (0..{n_frames - 1})")
        if len(row) == 2 and row[1].lower() == "drop":
            if any(f == frame for f, _ in out.points):
                raise ValueError(f"{where}: frame {frame} is both corrected and dropped")
            out.drops.add(frame)
            continue
        if len(row) != 4:
            raise ValueError(f"{where}: expected 'frame,keypoint,x,y' or 'frame,drop', got {line.strip()!r}")
        name = row[1].lower()
        if name not in INDEX:
            raise ValueError(f"{where}: unknown keypoint {row[1]!r}; use one of {', '.join(COCO17)}")
        try:
            x, y = float(row[2]), float(row[3])
        except ValueError:
            raise ValueError(f"{where}: x and y must be numbers, got {row[2]!r}, {row[3]!r}") from None
        if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= w and 0 <= y <= h):
            raise ValueError(f"{where}: ({x}, {y}) is outside the {w}x{h} source frame")
        if frame in out.drops:
            raise ValueError(f"{where}: frame {frame} is both corrected and dropped")
        if (frame, INDEX[name]) in out.points:
            raise ValueError(f"{where}: {name} of frame {frame} is corrected twice")
        out.points[(frame, INDEX[name])] = (x, y)
    if not len(out):
        raise ValueError(f"{source}: no corrections found")
    return out


def apply_to_raw(raw: np.ndarray, corrections: Corrections) -> np.ndarray:
    """The raw estimates [T, 17, 3] with the corrections in: exact points get score 1, dropped
    frames score 0 (no person, so smoothing fills them from the neighbours)."""
    out = np.array(raw, dtype=np.float32, copy=True)
    for (frame, k), (x, y) in corrections.points.items():
        out[frame, k] = (x, y, 1.0)
    for frame in corrections.drops:
        out[frame, :, 2] = 0.0
    return out


def merge(earlier: Corrections, later: Corrections) -> Corrections:
    """Corrections of a new version on top of the previous ones: later edits win; a later point
    on an earlier dropped frame brings that frame back, a later drop discards its earlier points."""
    points = {k: v for k, v in earlier.points.items() if k[0] not in later.drops}
    points.update(later.points)
    revived = {frame for frame, _ in later.points}
    return Corrections(points, (earlier.drops - revived) | later.drops)


def to_csv(corrections: Corrections) -> str:
    """The corrections as a file `parse_corrections` reads back (sorted, one edit a line)."""
    from schemas.keypoints import COCO17

    lines = ["frame,keypoint,x,y"]
    lines += [f"{f},{COCO17[k]},{x:.3f},{y:.3f}" for (f, k), (x, y) in sorted(corrections.points.items())]
    lines += [f"{f},drop" for f in sorted(corrections.drops)]
    return "\n".join(lines) + "\n"
