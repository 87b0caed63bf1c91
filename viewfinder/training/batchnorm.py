"""Folded BatchNorm training: BatchNorm statistics fixed on the new data and folded into the convolutions.

Fine-tuning a small CNN on a 2-core CPU spends about a third of each step in BatchNorm
(batch statistics forward, their gradients backward) and its elementwise passes. With
``batch_norm: folded`` the trainer first *recalibrates* every BatchNorm's running statistics
on augmented training images (so they describe the new domain, not ImageNet), then folds
each convolution's BatchNorm into it: the convolution's weights take the per-channel scale,
and the BatchNorm's ``bias`` becomes the convolution's bias (added inside the convolution
kernel, for free). The BatchNorm module is left holding identity statistics (mean 0,
variance 1 - eps, weight 1), so

* the state dict keeps the zoo architecture's keys and shapes: checkpoints, ``best_model``
  and ONNX export need nothing special, and a plain (unfolded) network loading these weights
  computes the same function;
* the trained parameters are the folded convolution weights and the bias.

Only a convolution whose output goes straight into a BatchNorm2d is folded (found by running
the network once with hooks); other BatchNorms keep training normally.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn


class _FoldedConv2d(nn.Conv2d):
    """A Conv2d whose bias is its BatchNorm's ``bias`` (kept out of the module tree: no new state-dict key)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight, self.__dict__["_folded_into"].bias)


class _FoldedBatchNorm2d(nn.BatchNorm2d):
    """The BatchNorm after folding: only what follows the normalisation (timm's BatchNormAct2d: drop, act)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        drop = getattr(self, "drop", None)
        act = getattr(self, "act", None)
        if drop is not None:
            x = drop(x)
        return act(x) if act is not None else x


def conv_bn_pairs(network: nn.Module, example: torch.Tensor) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """(conv, bn) pairs where the BatchNorm's input is exactly the convolution's output."""
    calls: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        calls.append((module, inputs[0], output))

    hooks = [m.register_forward_hook(record) for m in network.modules()
             if type(m) is nn.Conv2d or isinstance(m, nn.BatchNorm2d)]
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            network(example)
    finally:
        for hook in hooks:
            hook.remove()
        network.train(was_training)
    pairs = []
    seen: set[int] = set()
    for (conv, _, conv_out), (bn, bn_in, _) in zip(calls, calls[1:]):
        if (type(conv) is nn.Conv2d and isinstance(bn, nn.BatchNorm2d) and bn_in is conv_out
                and conv.bias is None and bn.affine and bn.track_running_stats and id(bn) not in seen):
            pairs.append((conv, bn))
            seen.add(id(bn))
    return pairs


@torch.no_grad()
def recalibrate_batch_norm(network: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace every BatchNorm2d's running statistics by the plain average over ``batches``; returns images seen."""
    norms = [m for m in network.modules() if isinstance(m, nn.BatchNorm2d) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average, not exponential
    was_training = network.training
    network.train(True)
    seen = 0
    try:
        for images in batches:
            network(images)
            seen += len(images)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        network.train(was_training)
    return seen


@torch.no_grad()
def fold_batch_norm(network: nn.Module, example: torch.Tensor) -> int:
    """Fold each conv -> BatchNorm2d pair of ``network`` in place (see the module docstring); returns the count."""
    pairs = conv_bn_pairs(network, example)
    for conv, bn in pairs:
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight.mul_(scale.reshape(-1, *([1] * (conv.weight.ndim - 1))))
        bn.bias.copy_(bn.bias - bn.running_mean * scale)
        bn.weight.fill_(1.0)
        bn.weight.requires_grad_(False)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)  # eval-mode BatchNorm of an unfolded network: x + bias exactly
        conv.__dict__["_folded_into"] = bn
        conv.__class__ = _FoldedConv2d
        bn.__class__ = _type_folded(type(bn))
    return len(pairs)


_FOLDED_TYPES: dict[type, type] = {}


def _type_folded(norm_type: type) -> type:
    """A subclass of the BatchNorm's own class (timm's BatchNormAct2d keeps its act/drop) with the folded forward."""
    if norm_type not in _FOLDED_TYPES:
        _FOLDED_TYPES[norm_type] = type(f"Folded{norm_type.__name__}", (_FoldedBatchNorm2d, norm_type), {})
    return _FOLDED_TYPES[norm_type]
