"""Images for training and evaluation: decode once, skip unreadable files, augment.

Every image of a split is decoded up front. Unreadable or corrupt files are skipped and
reported (a count plus the first paths; the list goes into ``train_result.json``) instead
of failing an epoch halfway. Decoded images are kept in memory, downscaled so the short
side matches what the network needs, when they fit in ``cache_mb``; otherwise they are
decoded again when used.

Training augmentation (torchvision transforms on PIL images), by ``crop``:

* ``random_resized``: RandomResizedCrop(input, scale=(crop_scale_min, 1)) - classification;
* ``pad_crop``: resize to input, pad ``pad`` px, random crop back - PP-ShiTuV2_rec's recipe;
* ``none``: resize to input only;

then optional horizontal flip, rotation (``rotate_prob``, up to ``rotate_degrees``),
colour jitter and random erasing. Evaluation uses the model's inference preprocessing
(:class:`~viewfinder.models.preprocess.Preprocessor`), so scores match ``predict``.

When the only random steps are the pad-crop and the flip (``pad_crop`` or ``none``, no
rotation, jitter or erasing: the recognition recipe), :class:`ResizedBatches` does the same
on whole batches instead: each image is resized to the input once, and each batch is
padded, cropped, flipped and normalised as tensors (about 1 ms of Python and PIL per image
less, ~8 % of a CPU training step at 96 px).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from ..datasets.formats import Sample
from ..errors import InputError
from ..io import decode_image
from ..models.preprocess import PreprocessConfig, Preprocessor
from .config import TrainConfig

log = logging.getLogger(__name__)

DEFAULT_CACHE_MB = 3072


@dataclass
class ImageSet:
    """The readable images of one split (decoded or re-decodable) with their targets."""

    samples: list[Sample]
    targets: list[object]
    images: list[np.ndarray] | None
    min_side: int
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def rgb(self, index: int) -> np.ndarray:
        if self.images is not None:
            return self.images[index]
        return _load(self.samples[index], self.min_side)


def _load(sample: Sample, min_side: int) -> np.ndarray:
    rgb = decode_image(sample.path, min_short_side=min_side).rgb
    return _shrink(rgb, min_side)


def _shrink(rgb: np.ndarray, min_side: int) -> np.ndarray:
    """Downscale so the short side is ``min_side`` (never upscale: augmentation does that)."""
    height, width = rgb.shape[:2]
    short = min(height, width)
    if short <= min_side:
        return rgb
    scale = min_side / short
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))


def load_images(samples: Sequence[Sample], targets: Sequence[object], min_side: int, what: str,
                cache_mb: int = DEFAULT_CACHE_MB, progress: bool = True) -> ImageSet:
    """Decode every image once: keep the readable ones (cached when they fit), report the rest."""
    kept_samples: list[Sample] = []
    kept_targets: list[object] = []
    images: list[np.ndarray] | None = []
    skipped: list[str] = []
    used = 0
    bar = tqdm(list(zip(samples, targets)), desc=f"reading {what}", unit="img", disable=not progress, leave=False)
    for sample, target in bar:
        try:
            rgb = _load(sample, min_side)
        except InputError as exc:
            skipped.append(f"{sample.relpath}: {exc}")
            continue
        kept_samples.append(sample)
        kept_targets.append(target)
        if images is not None:
            used += rgb.nbytes
            if used > cache_mb * 2**20:
                images = None  # too large to keep: decode on use from here on
                log.info("%s: images do not fit the %d MB cache; decoding them on use", what, cache_mb)
            else:
                images.append(rgb)
    if skipped:
        log.warning("%s: skipped %d unreadable image(s), e.g. %s", what, len(skipped), skipped[0])
    return ImageSet(kept_samples, kept_targets, images, min_side, skipped)


def train_transform(config: TrainConfig, preprocess: PreprocessConfig) -> object:
    """The training augmentation pipeline: PIL image in, normalised CHW float tensor out."""
    from torchvision.transforms import v2

    height, width = preprocess.input_size
    size = (height, width)
    steps: list[object] = []
    if config.crop == "random_resized":
        steps.append(v2.RandomResizedCrop(size, scale=(config.crop_scale_min, 1.0), antialias=True))
    else:
        steps.append(v2.Resize(size, antialias=True))
        if config.crop == "pad_crop" and config.pad > 0:
            steps += [v2.Pad(config.pad), v2.RandomCrop(size)]
    if config.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if config.rotate_prob and config.rotate_prob > 0:
        steps.append(v2.RandomApply([v2.RandomRotation(config.rotate_degrees)], p=config.rotate_prob))
    if config.color_jitter > 0:
        strength = config.color_jitter
        steps.append(v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength))
    steps += [
        v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(preprocess.mean), list(preprocess.std)),
    ]
    if config.random_erasing > 0:
        steps.append(v2.RandomErasing(p=config.random_erasing))
    return v2.Compose(steps)


def _target_dtype(target: object) -> torch.dtype:
    return torch.float32 if isinstance(target, (tuple, list)) else torch.long  # multi-hot or a class id


class ResizedBatches:
    """The ``pad_crop`` / ``none`` augmentation on whole batches of pre-resized uint8 images.

    Same distribution as :func:`train_transform` for these recipes: bilinear resize to the
    input (done once here), zero padding by ``pad``, a uniformly placed crop, a flip with
    probability 0.5, ``(x / 255 - mean) / std``. Random numbers come from torch's global
    generator, which checkpoints save and resume restores.
    """

    def __init__(self, images: ImageSet, config: TrainConfig, preprocess: PreprocessConfig) -> None:
        self.height, self.width = preprocess.input_size
        self.pixels = torch.empty((len(images), self.height, self.width, 3), dtype=torch.uint8)
        pixels = self.pixels.numpy()  # the same memory
        for index in range(len(images)):
            resized = Image.fromarray(images.rgb(index)).resize((self.width, self.height), Image.Resampling.BILINEAR)
            pixels[index] = np.asarray(resized)
        self.targets = torch.as_tensor(images.targets,
                                       dtype=_target_dtype(images.targets[0]) if len(images) else torch.long)
        self.pad = config.pad if config.crop == "pad_crop" else 0
        self.hflip = config.hflip
        std = torch.tensor(preprocess.std, dtype=torch.float32)
        self.scale = 1.0 / (255.0 * std)
        self.shift = -torch.tensor(preprocess.mean, dtype=torch.float32) / std

    @staticmethod
    def applies(config: TrainConfig, images: ImageSet, preprocess: PreprocessConfig,
                cache_mb: int = DEFAULT_CACHE_MB) -> bool:
        """Whether this recipe is only pad-crop + flip and the resized images fit in ``cache_mb``."""
        height, width = preprocess.input_size
        only_crop_and_flip = (config.crop in ("pad_crop", "none") and not (config.rotate_prob or 0) > 0
                              and config.color_jitter <= 0 and config.random_erasing <= 0)
        return (only_crop_and_flip and images.images is not None
                and len(images) * height * width * 3 <= cache_mb * 2**20)

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented images (B x 3 x H x W, float32, channels-last strides) and their targets."""
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.pixels[index]  # B x H x W x 3: channels last all the way, as the network wants it
        if self.pad > 0:
            padded = F.pad(images, (0, 0, self.pad, self.pad, self.pad, self.pad))
            offsets = torch.randint(0, 2 * self.pad + 1, (len(index), 2)).tolist()
            images = torch.stack([padded[i, top:top + self.height, left:left + self.width]
                                  for i, (top, left) in enumerate(offsets)])
        if self.hflip:
            flip = (torch.rand(len(index)) < 0.5).view(-1, 1, 1, 1)
            images = torch.where(flip, images.flip(2), images)
        normalised = images.float() * self.scale + self.shift
        return normalised.permute(0, 3, 1, 2), self.targets[index]

    def __call__(self, batches: Sequence[Sequence[int]]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for indices in batches:
            yield self.batch(indices)


class TrainDataset(torch.utils.data.Dataset):
    """Augmented training samples: ``(image tensor, target)``."""

    def __init__(self, images: ImageSet, transform: object) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = Image.fromarray(self.images.rgb(index))
        target = self.images.targets[index]
        return self.transform(image), torch.as_tensor(target, dtype=_target_dtype(target))


class EvalBatches:
    """Inference-preprocessed batches of an :class:`ImageSet` (resized once, normalised per batch)."""

    def __init__(self, images: ImageSet, preprocess: PreprocessConfig, batch_size: int) -> None:
        self.preprocessor = Preprocessor(preprocess)
        self.images = images
        self.batch_size = batch_size
        self._resized: list[np.ndarray] | None = None
        if images.images is not None:
            self._resized = [self.preprocessor.resize_one(rgb) for rgb in images.images]

    def __iter__(self):
        for start in range(0, len(self.images), self.batch_size):
            indices = range(start, min(start + self.batch_size, len(self.images)))
            if self._resized is not None:
                resized = [self._resized[i] for i in indices]
            else:
                resized = [self.preprocessor.resize_one(self.images.rgb(i)) for i in indices]
            yield torch.from_numpy(self.preprocessor.normalize(resized))

    def __len__(self) -> int:
        return (len(self.images) + self.batch_size - 1) // self.batch_size
