"""Reference dances: poses extracted ahead of time, smoothed, correctable, versioned in the store.

add_reference(settings, "dance.mp4", "salsa")          # estimate, smooth, store v1
correct_reference(settings, "salsa", "fixes.csv")      # manual edits -> v2
poses, times, src_size = load_reference(settings, "salsa")
add_reference(settings, "dance.mp4", "salsa", representation="parts")  # also part maps per frame
parts = load_reference_parts(settings, load_reference_version(settings, "salsa"))
"""

from trainer.references.corrections import Corrections, parse_corrections
from trainer.references.store import (
    Reference,
    add_reference,
    correct_reference,
    list_references,
    load_reference,
    load_reference_parts,
    load_reference_version,
    read_reference,
    read_reference_parts,
    smooth_reference,
)

__all__ = [
    "Corrections",
    "Reference",
    "add_reference",
    "correct_reference",
    "list_references",
    "load_reference",
    "load_reference_parts",
    "load_reference_version",
    "parse_corrections",
    "read_reference",
    "read_reference_parts",
    "smooth_reference",
]
