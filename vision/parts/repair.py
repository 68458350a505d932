"""Map part masks with perturbed colours back to part ids.

A part mask that went through a browser canvas, a video codec or JPEG no longer holds the exact
palette colours: compression noise, chroma blur at part borders, sometimes a colour-managed
shift of every colour. Colours are clustered with k-means in RGB, starting from the 25 palette
colours (one cluster per class), so each cluster follows its class's colour wherever the
perturbation moved it; each cluster centre is then snapped to the nearest palette colour and
its pixels get that class id. A global shift thus moves whole clusters, not single pixels across
the nearest-colour boundaries.

Colour alone cannot place part borders: JPEG halves the colour resolution and rings next to
edges, and BodyPix's neighbouring parts have neighbouring colours (about 35 RGB units apart), so
about one part pixel in ten within two pixels of a border lands in the wrong cluster. With
``refine=True`` (default) only confidently coloured pixels (clearly nearer one cluster than any
other, and either with the same label all around or almost exactly the cluster's colour) keep
their label; the rest are filled in by a
watershed on the colour gradient, which puts each border where the colour changes fastest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from skimage.filters import sobel
from skimage.segmentation import watershed
from sklearn.cluster import KMeans

from vision.parts.colours import PALETTE

FIT_SAMPLE = 50_000  # distinct colours the clustering is fitted on at most
SEED_MARGIN = 5.0  # RGB units a seed pixel must be nearer its own cluster than the next one
EXACT = 3.0  # RGB units from its cluster within which a pixel is a seed even on a border
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def repair_ids(
    image_rgb: np.ndarray, palette: np.ndarray = PALETTE, *, refine: bool = True, seed: int = 0, max_iter: int = 20
) -> np.ndarray:
    """Class ids uint8 [H, W] (0 = background) of a colour-perturbed part mask [H, W, 3] uint8.

    refine: re-decide uncertain pixels near borders from the colour gradient (see above).
    """
    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"part mask must be uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
    palette = np.asarray(palette, np.float64)
    if palette.ndim != 2 or palette.shape[1] != 3 or len(palette) > 256:
        raise ValueError(f"palette must be [K, 3] with K <= 256, got {palette.shape}")
    # Fit on the distinct colours weighted by their counts: the same clusters as on all pixels,
    # for far fewer points; a random subset of them bounds the time on very noisy images.
    flat = image.reshape(-1, 3).astype(np.uint32)
    packed = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]  # one integer per colour: a fast unique
    keys, inverse, counts = np.unique(packed, return_inverse=True, return_counts=True)
    colours = np.column_stack([keys >> 16, (keys >> 8) & 255, keys & 255]).astype(np.float64)
    fit, weight = colours, counts.astype(np.float64)
    if len(colours) > FIT_SAMPLE:
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(colours), FIT_SAMPLE, replace=False, p=weight / weight.sum())
        fit, weight = colours[pick], np.ones(FIT_SAMPLE)
    inverse = inverse.reshape(-1)
    if len(fit) < len(palette):  # fewer distinct colours than classes: nothing to cluster
        distances = np.sqrt(((colours[:, None] - palette[None]) ** 2).sum(axis=2))  # [colours, K]
        per_colour = distances.argmin(axis=1)
    else:
        km = KMeans(n_clusters=len(palette), init=palette, n_init=1, max_iter=max_iter, random_state=seed)
        km.fit(fit, sample_weight=weight)
        snapped = np.argmin(((km.cluster_centers_[:, None] - palette[None]) ** 2).sum(axis=2), axis=1)
        distances = km.transform(colours)  # to the cluster centres, wherever they moved
        per_colour = snapped[distances.argmin(axis=1)]
    labels = per_colour[inverse].astype(np.uint8).reshape(image.shape[:2])
    if not refine:
        return labels
    nearest2 = np.sort(distances, axis=1)[:, :2]
    confident = (nearest2[:, 1] - nearest2[:, 0] > SEED_MARGIN)[inverse].reshape(labels.shape)
    exact = (nearest2[:, 0] < EXACT)[inverse].reshape(labels.shape)
    kernel = np.ones((3, 3), np.uint8)
    uniform = cv2.dilate(labels, kernel) == cv2.erode(labels, kernel)
    seeds = np.where(confident & (uniform | exact), labels.astype(np.int32) + 1, 0)
    if not seeds.any():
        return labels
    gradient = sum(sobel(image[..., c].astype(np.float32)) for c in range(3))
    return (watershed(gradient, seeds) - 1).astype(np.uint8)


def repair_image(image_rgb: np.ndarray, palette: np.ndarray = PALETTE, *, refine: bool = True) -> np.ndarray:
    """The part mask with every pixel set to its class's exact palette colour."""
    return np.asarray(palette, np.uint8)[repair_ids(image_rgb, palette, refine=refine)]


@dataclass(frozen=True)
class Repaired:
    """One repaired file: where from, where to, how many parts it shows, share of pixels recoloured."""

    source: Path
    target: Path
    parts: int
    recoloured: float


def mask_files(folder: Path) -> list[Path]:
    """The image files directly in folder, in name order."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def repair_folder(
    folder: Path, out_dir: Path | None = None, palette: np.ndarray = PALETTE, *, refine: bool = True
) -> list[Repaired]:
    """Repair every part-mask image in folder into PNG copies; the inputs are never overwritten.

    out_dir defaults to <folder>/repaired. Raises FileNotFoundError for a missing folder and
    ValueError for an output folder equal to the input folder or an unreadable image.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder: {folder}")
    out_dir = Path(out_dir) if out_dir is not None else folder / "repaired"
    if out_dir.resolve() == folder.resolve():
        raise ValueError("the output folder must differ from the input folder (inputs are kept)")
    palette = np.asarray(palette, np.uint8)
    sources = mask_files(folder)
    stems = [p.stem for p in sources]
    clashes = sorted({s for s in stems if stems.count(s) > 1})
    if clashes:
        raise ValueError(f"several images share the name(s) {clashes}: their repaired PNGs would collide")
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for path in sources:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot read image {path}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        ids = repair_ids(rgb, palette, refine=refine)
        fixed = palette[ids]
        target = out_dir / f"{path.stem}.png"
        if not cv2.imwrite(str(target), cv2.cvtColor(fixed, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {target}")
        found = int(np.count_nonzero(np.bincount(ids.ravel(), minlength=len(palette))[1:]))
        done.append(Repaired(path, target, found, float((fixed != rgb).any(axis=2).mean())))
    return done
