"""The fallback demo corpus: photos that ship inside scikit-image and scikit-learn, with captions
written for this project. Materialised once as PNG + .txt sidecars (img2dataset layout)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SKIMAGE_CAPTIONS = {
    "astronaut": "portrait of an astronaut in a white space suit in front of an american flag",
    "camera": "black and white photo of a man with a camera on a tripod in a park",
    "chelsea": "a tabby cat with green eyes looking to the side",
    "coffee": "a cup of coffee with a saucer and spoon on a table",
    "rocket": "a rocket on the launch pad under a blue sky",
    "hubble_deep_field": "deep space image full of distant galaxies",
    "immunohistochemistry": "microscope image of stained tissue cells in brown and blue",
    "retina": "medical photo of the retina of a human eye with blood vessels",
    "moon": "grayscale close-up of the cratered surface of the moon",
    "coins": "old coins laid out in rows on a dark background",
    "page": "scanned page of printed text",
    "text": "photo of printed text on a sign with a gradient background",
    "clock": "motion blurred photo of a wall clock",
    "horse": "black silhouette of a galloping horse",
    "brick": "texture of a brick wall",
    "grass": "texture of green grass blades",
    "gravel": "texture of small gravel stones",
    "colorwheel": "a colour wheel showing the hue spectrum",
    "logo": "the scikit-image logo, a snake in a stylised image",
    "checkerboard": "black and white checkerboard pattern",
    "cell": "microscope image of a single cell",
}
SKLEARN_CAPTIONS = {
    "china": "a chinese temple with a curved roof among trees",
    "flower": "close-up of a pink flower with a yellow centre",
}


def _to_pil(a: np.ndarray) -> Image.Image:
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        a = ((a - a.min()) / max(a.max() - a.min(), 1e-9) * 255).astype(np.uint8)
    return Image.fromarray(a).convert("RGB")


def materialise_samples(folder: Path) -> Path:
    """Write the bundled photos and captions into `folder` (idempotent). Returns the folder."""
    folder = Path(folder)
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    try:
        from skimage import data as skdata
    except ImportError as e:
        raise ImportError("the samples corpus needs scikit-image: pip install 'megapairs[offline]'") from e
    for name, caption in SKIMAGE_CAPTIONS.items():
        try:
            img = _to_pil(getattr(skdata, name)())
        except Exception:  # a loader that needs a download offline
            continue
        img.save(folder / f"{name}.png")
        (folder / f"{name}.txt").write_text(caption + "\n")
    try:
        from sklearn.datasets import load_sample_images

        bunch = load_sample_images()
        for fname, arr in zip(bunch.filenames, bunch.images):
            stem = Path(fname).stem
            Image.fromarray(arr).save(folder / f"{stem}.jpg", quality=92)
            (folder / f"{stem}.txt").write_text(SKLEARN_CAPTIONS.get(stem, stem) + "\n")
    except ImportError:
        pass
    done.write_text("ok\n")
    return folder
