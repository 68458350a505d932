"""What a part segmenter returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vision.parts.colours import NUM_PARTS
from vision.pose.base import Person


@dataclass
class PartsResult:
    """Body parts of everyone in one image, at the image's size.

    part_ids: uint8 [H, W], 0 = background, 1..24 = parts (vision.parts.colours.PART_NAMES).
    person_ids: uint8 [H, W], 0 = no one, k = persons[k - 1]. A person pixel that no pose
    accounts for (no pose was found) is 0 here while its part id is set.
    persons: poses, most confident first: keypoints float32 [17, 3] (x_px, y_px, score).
    source: "bodypix" or "pose" (derived from keypoints and a person mask).
    """

    part_ids: np.ndarray
    person_ids: np.ndarray
    persons: list[Person] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        if self.part_ids.ndim != 2 or self.part_ids.dtype != np.uint8:
            raise ValueError(f"part_ids must be uint8 [H, W], got {self.part_ids.dtype} {self.part_ids.shape}")
        if self.person_ids.shape != self.part_ids.shape or self.person_ids.dtype != np.uint8:
            raise ValueError(
                "person_ids must be uint8 with the shape of part_ids, got "
                f"{self.person_ids.dtype} {self.person_ids.shape}"
            )
        if self.part_ids.size and self.part_ids.max() > NUM_PARTS:
            raise ValueError(f"part ids must lie in 0..{NUM_PARTS}, got {self.part_ids.max()}")

    def person_parts(self, index: int) -> np.ndarray:
        """The part-id map of persons[index] alone (everyone else is background)."""
        if not 0 <= index < len(self.persons):
            raise IndexError(f"person index {index} out of range for {len(self.persons)} person(s)")
        return np.where(self.person_ids == index + 1, self.part_ids, 0).astype(np.uint8)

    @property
    def poses(self) -> np.ndarray:
        """All keypoints as float32 [N, 17, 3]."""
        if not self.persons:
            return np.zeros((0, 17, 3), np.float32)
        return np.stack([p.keypoints for p in self.persons]).astype(np.float32)
