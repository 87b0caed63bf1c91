"""Networks to fine-tune: a zoo model (or saved model dir) with a head sized for the dataset.

* classification / multi-label: the zoo network rebuilt with ``num_classes`` outputs; every
  pretrained tensor whose shape still fits is copied (the new head starts random);
* recognition: the network's embedding - pooled pre-logits features for a classifier
  (:class:`~viewfinder.models.feature.PooledFeatures`), the output of a feature model such
  as PP-ShiTuV2_rec - plus, for training only, a :class:`RecognitionHead` (BNNeck, a
  BatchNorm1d with frozen bias, then a bias-free FC - or a PaddleClas margin head - to the
  training identities).

The triplet loss shapes the embedding itself and the CE loss runs through the BNNeck (the
"bag of tricks" arrangement), so the exported network is the zoo architecture unchanged:
what ``create_model(model_dir=..., task="image_feature")`` and the PP-ShiTuV2 pipeline
compute is exactly the embedding that was trained. For a classifier backbone the BNNeck
and FC are folded into its classifier on export, so the saved model also classifies the
training identities.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..datasets.formats import TASK_OF_TYPE
from ..errors import TrainingError
from ..models.feature import CLASSIFIER_TASKS, FEATURE_TASK, PooledFeatures, feature_network
from ..models.loader import LoadedNetwork, build_network
from ..models.preprocess import PreprocessConfig
from ..models.registry import ModelSpec
from .config import HEAD_KINDS

log = logging.getLogger(__name__)


def with_num_classes(base: LoadedNetwork, num_classes: int) -> nn.Module:
    """``base``'s network with ``num_classes`` outputs; pretrained tensors are kept where shapes allow."""
    if num_classes == base.num_classes:
        return base.module
    fresh = build_network(base.spec, num_classes)
    target = fresh.state_dict()
    source = base.module.state_dict()
    kept = {k: v for k, v in source.items() if k in target and tuple(v.shape) == tuple(target[k].shape)}
    fresh.load_state_dict(kept, strict=False)
    new = sorted(set(target) - set(kept))
    for name, module in fresh.named_modules():
        # timm's head init (uniform +-1/sqrt(classes)) gives huge logits for a handful of classes
        # on 1000+ pretrained features; a small normal init starts the loss near log(classes).
        if isinstance(module, nn.Linear) and f"{name}.weight" in new:
            nn.init.normal_(module.weight, std=0.01)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    log.info("%s: new %d-class head; %d tensors start from scratch (%s)", base.spec.name, num_classes, len(new),
             ", ".join(new[:4]) + (" ..." if len(new) > 4 else ""))
    return fresh


class RecognitionHead(nn.Module):
    """BNNeck (BatchNorm1d, bias frozen at 0) + a bias-free head to the training identities.

    ``fc``: a Linear (PP-ShiTuV2_rec). ``arcmargin`` / ``cosmargin``: ``scale * cos`` between the
    normalised BNNeck output and the normalised identity weights, with the target's angle
    widened by ``margin`` (ArcFace) or its cosine lowered by ``margin`` (CosFace) during training;
    they pull each identity into a tight cone, which is what nearest-neighbour search rewards.
    """

    def __init__(self, dim: int, num_ids: int, kind: str = "fc", margin: float = 0.0, scale: float = 30.0) -> None:
        super().__init__()
        if kind not in HEAD_KINDS:
            raise TrainingError(f"head must be one of {', '.join(HEAD_KINDS)}, got {kind!r}")
        self.kind, self.margin, self.scale = kind, margin, scale
        self.neck = nn.BatchNorm1d(dim)
        self.neck.bias.requires_grad_(False)
        self.fc = nn.Linear(dim, num_ids, bias=False)
        if kind == "fc":
            nn.init.normal_(self.fc.weight, std=0.001)
        else:
            nn.init.xavier_normal_(self.fc.weight)

    def forward(self, embedding: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        features = self.neck(embedding)
        if self.kind == "fc":
            return self.fc(features)
        cosine = F.linear(F.normalize(features), F.normalize(self.fc.weight)).clamp(-1.0, 1.0)
        if targets is None or not self.margin:
            return self.scale * cosine
        target = F.one_hot(targets, cosine.shape[1]).bool()
        if self.kind == "cosmargin":
            widened = cosine - self.margin
        else:
            # cos(theta + m); past theta = pi - m the angle cannot widen further, so a linear
            # penalty takes over there (ArcFace's guard, as PaddleClas; keeps the logit monotonic)
            sine = torch.sqrt((1.0 - cosine * cosine).clamp(min=0.0))
            widened = cosine * math.cos(self.margin) - sine * math.sin(self.margin)
            limit = math.cos(math.pi - self.margin)
            widened = torch.where(cosine > limit, widened, cosine - math.sin(math.pi - self.margin) * self.margin)
        return self.scale * torch.where(target, widened, cosine)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of one Linear equal to this head in eval mode (for a margin head: with the
        same argmax; its scores are ``scale * cos`` times the feature norm)."""
        bn = self.neck
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        fc = self.fc.weight if self.kind == "fc" else F.normalize(self.fc.weight)
        weight = fc * scale.unsqueeze(0)
        bias = fc @ shift
        return weight.detach(), bias.detach()


@dataclass
class TrainableModel:
    """What the trainer optimises and what gets exported."""

    base: LoadedNetwork
    network: nn.Module  # the exported network (zoo architecture)
    task: str  # the exported model's task
    num_classes: int  # the network's builder argument: classes, or the embedding size of a feature model
    head: RecognitionHead | None = None  # recognition only
    embed: nn.Module | None = None  # recognition only: network -> embedding

    def modules(self) -> list[nn.Module]:
        return [m for m in (self.network, self.head) if m is not None]

    def parameters(self) -> list[nn.Parameter]:
        return [p for m in self.modules() for p in m.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> None:
        for module in self.modules():
            module.train(mode)

    def to(self, device: torch.device, channels_last: bool = False) -> None:
        for module in self.modules():
            module.to(device)
        if channels_last:
            self.network.to(memory_format=torch.channels_last)

    def export_network(self) -> nn.Module:
        """The network to save: for a recognition classifier, its classifier replaced by the folded head."""
        if self.head is None or self.base.spec.task not in CLASSIFIER_TASKS:
            return self.network
        classifier = self.network.get_classifier() if hasattr(self.network, "get_classifier") else None
        if isinstance(classifier, nn.Linear) and tuple(classifier.weight.shape) == tuple(self.head.fc.weight.shape):
            weight, bias = self.head.folded()
            with torch.no_grad():
                classifier.weight.copy_(weight)
                if classifier.bias is not None:
                    classifier.bias.copy_(bias)
        return self.network

    def export_spec(self) -> ModelSpec:
        return replace(self.base.spec, task=self.task)


def build_trainable(base: LoadedNetwork, dataset_type: str, num_classes: int, head: str = "fc", head_margin: float = 0.0,
                    head_scale: float = 30.0) -> TrainableModel:
    """Attach the dataset's head to ``base`` (see the module docstring)."""
    task = TASK_OF_TYPE[dataset_type]
    if task == FEATURE_TASK:
        if base.spec.task in CLASSIFIER_TASKS:
            network, network_classes = with_num_classes(base, num_classes), num_classes
        else:
            network, network_classes = base.module, base.num_classes
        if base.spec.task not in CLASSIFIER_TASKS and base.spec.task != FEATURE_TASK:
            raise TrainingError(f"{base.spec.name} is a {base.spec.task} model; recognition needs a classification "
                                "or feature model")
        embed = feature_network(base.spec, network)
        dim = _embedding_dim(embed, base.preprocess)
        head_module = RecognitionHead(dim, num_classes, head, head_margin, head_scale)
        return TrainableModel(base, network, task, network_classes, head_module, embed)
    if base.spec.task not in CLASSIFIER_TASKS:
        raise TrainingError(f"{base.spec.name} is a {base.spec.task} model; {dataset_type} training needs a "
                            "classification model (any zoo classifier or multi-label model)")
    return TrainableModel(base, with_num_classes(base, num_classes), task, num_classes)


def _grouped(network: nn.Module) -> tuple[nn.Module, dict[int, list[str]]]:
    """The timm network inside ``network`` and its coarse parameter groups (stem, stages, head)."""
    target = network.net if isinstance(network, PooledFeatures) else network
    matcher = getattr(target, "group_matcher", None)
    if matcher is None:
        raise TrainingError(f"freeze_groups needs a timm network with stages; {type(target).__name__} has none")
    from timm.models import group_parameters

    return target, group_parameters(target, matcher(coarse=True))


def parameter_groups(network: nn.Module) -> int:
    """How many coarse parameter groups (stem, stages, head) ``network`` has; 0 if it is not a timm network."""
    try:
        return len(_grouped(network)[1])
    except TrainingError:
        return 0


def freeze_groups(network: nn.Module, count: int) -> int:
    """Freeze the first ``count`` parameter groups of a timm network (1 = the stem, then one per stage;
    -1 = every group but the last, the head: a linear probe of the pretrained features).

    Frozen layers need no backward pass, which is most of the cost at high resolution on a
    CPU. Their BatchNorm statistics still follow the new data. Returns the number of frozen tensors.
    """
    if count == 0:
        return 0
    target, groups = _grouped(network)
    order = sorted(groups)
    if count < 0:
        count = len(order) - 1
    if count >= len(order):
        raise TrainingError(f"freeze_groups {count}: {type(target).__name__} has {len(order)} groups "
                            "(stem, stages, head); freeze fewer")
    names = {name for group in order[:count] for name in groups[group]}
    for name, parameter in target.named_parameters():
        if name in names:
            parameter.requires_grad_(False)
    return len(names)


def _embedding_dim(embed: nn.Module, preprocess: PreprocessConfig) -> int:
    height, width = preprocess.input_size
    was_training = embed.training
    embed.eval()
    with torch.no_grad():
        dim = int(embed(torch.zeros(1, 3, height, width)).reshape(1, -1).shape[1])
    embed.train(was_training)
    return dim


def resolve_preprocess(base: PreprocessConfig, input_size: int | None, resize_short: int | None) -> PreprocessConfig:
    """The model's preprocessing with the training input size (``resize_short`` defaults to ``input_size``)."""
    if input_size is None and resize_short is None:
        return base
    side = input_size or base.input_size[0]
    short = resize_short or side
    if short < side:
        raise TrainingError(f"resize_short {short} is smaller than input_size {side}")
    return replace(base, resize_short=short, crop=side, resize=None)
