"""JPEG decoding and preprocessing on the GPU (nvJPEG through torchvision).

On a GPU the network is rarely the bottleneck: Pillow decodes a few hundred 640x480
JPEGs per second per core, nvJPEG tens of thousands. So for local JPEG files on CUDA
the predictor only reads bytes on the CPU; decoding, resizing and normalising run on
the GPU in one batch. The geometry is the CPU :class:`Preprocessor`'s (short-side
resize, centre crop, or a fixed size, antialiased for the pillow backend, not for cv2's,
rounded to uint8 levels),
so results match the CPU path to within one grey level before normalisation.

Anything else (PNGs, URLs, arrays, EXIF-rotated or CMYK JPEGs, files over the pixel
limit, files nvJPEG rejects) returns ``None`` from :meth:`CudaJpegDecoder.read` or
:meth:`CudaJpegDecoder.decode` and takes the CPU path, which also produces the proper
error messages. ``$VIEWFINDER_GPU_DECODE=0`` turns this path off.
"""
from __future__ import annotations

import logging
import os
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import EngineUnavailableError
from ..io.jpeg_header import read_jpeg_header
from .preprocess import shrinks_below_half

log = logging.getLogger(__name__)

_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest"}
_JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")


@dataclass
class PendingJpeg:
    """A JPEG file read in the decode pool, waiting for the batched GPU decode."""

    item: Any  # the InputItem, kept so a file nvJPEG rejects can still be decoded on the CPU
    data: torch.Tensor  # the file's bytes, uint8, on the CPU
    size: tuple[int, int]  # (width, height) from the header


def _torchvision_io() -> Any:
    try:
        import torchvision.io as tv_io
    except ImportError as exc:
        raise EngineUnavailableError(f"GPU JPEG decoding needs torchvision ({exc})") from None
    return tv_io


class CudaJpegDecoder:
    """Batched JPEG decode + resize + normalise on ``device`` (any torch device; CUDA is the point)."""

    def __init__(self, config: Any, device: torch.device) -> None:
        if config.interpolation not in _MODES:
            raise EngineUnavailableError(f"GPU preprocessing has no {config.interpolation!r} resize")
        self.config = config
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise EngineUnavailableError(f"GPU JPEG decoding on {self.device} needs a CUDA GPU; none is available")
        std = torch.tensor(config.std, dtype=torch.float32)
        mean = torch.tensor(config.mean, dtype=torch.float32)
        self._scale = (config.scale / std).view(1, 3, 1, 1).to(self.device)
        self._shift = (-mean / std).view(1, 3, 1, 1).to(self.device)

    # --- decode pool: header checks and file bytes, no pixels -------------------------------
    def read(self, item: Any, max_pixels: int) -> PendingJpeg | None:
        """The file's bytes when it is a plain local JPEG this path can take, else None."""
        source = item.source
        if not isinstance(source, (str, Path)) or str(source).startswith(("http://", "https://")):
            return None
        path = Path(source)
        if path.suffix.lower() not in _JPEG_SUFFIXES:
            return None
        try:
            with open(path, "rb", buffering=0) as file:  # unbuffered: one read, ~3x cheaper than np.fromfile
                data = bytearray(os.fstat(file.fileno()).st_size)
                if file.readinto(data) != len(data):
                    return None
        except OSError:  # unreadable: the CPU path reports it properly
            return None
        header = read_jpeg_header(data)
        if header is None or header.components not in (1, 3) or header.orientation != 1:
            return None  # not a JPEG we can read here, CMYK, or rotated (Pillow applies EXIF orientation)
        width, height = header.width, header.height
        if width * height > max_pixels or width < 1 or height < 1:
            return None
        return PendingJpeg(item, torch.frombuffer(data, dtype=torch.uint8), (width, height))

    # --- main thread: one batched decode ---------------------------------------------------
    def _decode_all(self, pending: list[PendingJpeg]) -> list[torch.Tensor | None]:
        tv_io = _torchvision_io()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision 0.29 flags its decoders as deprecated
            try:
                return list(tv_io.decode_jpeg([p.data for p in pending], mode=tv_io.ImageReadMode.RGB,
                                              device=self.device))
            except RuntimeError:
                pass  # one file nvJPEG cannot take fails the whole batch: retry one by one
            decoded: list[torch.Tensor | None] = []
            for entry in pending:
                try:
                    decoded.append(tv_io.decode_jpeg(entry.data, mode=tv_io.ImageReadMode.RGB, device=self.device))
                except RuntimeError as exc:
                    log.debug("GPU decode of %s failed (%s); decoding on the CPU", entry.item.input_path, exc)
                    decoded.append(None)
            return decoded

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] uint8 (one size) -> [N, 3, h, w] float32 on uint8 levels, the CPU geometry."""
        cfg = self.config
        mode = _MODES[cfg.interpolation]
        height, width = images.shape[-2:]
        x = images.float()

        def options(new_h: int, new_w: int) -> dict[str, Any]:
            if mode == "nearest":
                return {"mode": mode}
            # The pillow backend antialiases; cv2 only when shrinking below half (INTER_AREA).
            antialias = cfg.backend == "pillow" or shrinks_below_half(width, height, new_w, new_h)
            return {"mode": mode, "antialias": antialias, "align_corners": False}

        if cfg.resize is not None:
            size = (cfg.resize[1], cfg.resize[0])
            if (height, width) != size:
                x = F.interpolate(x, size=size, **options(*size))
        else:
            short = min(width, height)
            new_w = max(1, round(width * cfg.resize_short / short))
            new_h = max(1, round(height * cfg.resize_short / short))
            if cfg.crop is not None:
                new_w, new_h = max(new_w, cfg.crop), max(new_h, cfg.crop)
            if (new_h, new_w) != (height, width):
                x = F.interpolate(x, size=(new_h, new_w), **options(new_h, new_w))
            if cfg.crop is not None:
                # Resizing everything then cropping samples the same points as Pillow's box resize.
                left, top = (new_w - cfg.crop) // 2, (new_h - cfg.crop) // 2
                x = x[:, :, top:top + cfg.crop, left:left + cfg.crop]
        return x.round_().clamp_(0, 255)

    def normalize(self, resized: torch.Tensor) -> torch.Tensor:
        return (resized * self._scale + self._shift).contiguous()

    def decode(self, pending: list[PendingJpeg]) -> list[tuple[tuple[int, int], torch.Tensor] | None]:
        """Per file: (original (width, height), normalised CHW input on the device), or None."""
        decoded = self._decode_all(pending)
        inputs: list[torch.Tensor | None] = [None] * len(decoded)
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for index, image in enumerate(decoded):
            if image is not None:
                groups[tuple(image.shape[-2:])].append(index)
        for indices in groups.values():  # one resize per distinct size
            batch = self.normalize(self.resize(torch.stack([decoded[i] for i in indices])))
            for position, index in enumerate(indices):
                inputs[index] = batch[position]
        if self.device.type == "cuda":  # hand over finished tensors: the predict thread may run another stream
            torch.cuda.current_stream(self.device).synchronize()
        # The full-size pixels stay on the GPU and are dropped: copying them back (PaddleX's
        # input_img) cost more than decoding them. A result reads its file again on the CPU
        # when its input_img is used (drawing, or a user asking for it).
        return [None if model_input is None else (entry.size, model_input)
                for entry, model_input in zip(pending, inputs)]


def gpu_decoder_for(engine: Any, config: Any) -> CudaJpegDecoder | None:
    """A GPU JPEG decoder when ``engine`` is torch on CUDA and the preprocessing has a GPU twin, else None."""
    device = getattr(engine, "device", None)
    if getattr(engine, "name", "") != "torch" or device is None or torch.device(device).type != "cuda":
        return None
    if os.environ.get("VIEWFINDER_GPU_DECODE", "1").lower() in ("0", "false", "no"):
        return None
    if not hasattr(config, "interpolation") or config.interpolation not in _MODES:
        return None
    try:
        _torchvision_io()
        return CudaJpegDecoder(config, torch.device(device))
    except EngineUnavailableError as exc:
        log.info("GPU JPEG decoding unavailable (%s); decoding on the CPU", exc)
        return None
