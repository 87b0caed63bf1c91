"""ML-Decoder (Ridnik et al., 2021) laid out as PaddleClas builds it, plus the multi-label networks around it.

timm ships an ML-Decoder (``timm.layers.ml_decoder``), but it no longer runs on current
torch (``nn.TransformerDecoder`` looks for a ``self_attn`` its layer does not have) and
stores its weights differently. This module mirrors PaddleClas's
``ppcls/arch/gears/ml_decoder.py`` parameter for parameter, so a PaddleX ``.pdparams``
maps onto it by renaming alone (plus transposing Paddle's ``[in, out]`` Linear weights):

* ``input_proj``: 1x1 conv from the backbone's channels to ``embed_dim``, then ReLU;
* ``query_pos_embed``: one frozen query per group (``query_num``, normally = classes);
* ``decoder.layers.N``: Paddle's post-norm ``TransformerDecoderLayer`` with the
  self-attention replaced by the identity, so its first sub-block is ``norm1(q + q)``;
* ``group_conv``: a grouped 1x1 conv = one small fully-connected layer per query.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class CrossAttention(nn.Module):
    """Multi-head attention with separate q/k/v/out projections (Paddle's ``MultiHeadAttention`` names)."""

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        batch, length, dim = query.shape
        heads = self.num_heads

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(batch, x.shape[1], heads, dim // heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(
            split(self.q_proj(query)), split(self.k_proj(memory)), split(self.v_proj(memory))
        )
        return self.out_proj(attended.transpose(1, 2).reshape(batch, length, dim))


class DecoderLayer(nn.Module):
    """Post-norm transformer decoder layer without self-attention (eval mode: dropout is the identity)."""

    def __init__(self, embed_dim: int, num_heads: int, mlp_hidden_dim: int, activation: str = "relu") -> None:
        super().__init__()
        self.cross_attn = CrossAttention(embed_dim, num_heads)
        self.linear1 = nn.Linear(embed_dim, mlp_hidden_dim)
        self.linear2 = nn.Linear(mlp_hidden_dim, embed_dim)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.norm3 = nn.LayerNorm(embed_dim)
        self.activation = {"relu": F.relu, "gelu": F.gelu}[activation]

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        # PaddleClas swaps self-attention for an identity but keeps the residual: norm1(q + q).
        query = self.norm1(query + query)
        query = self.norm2(query + self.cross_attn(query, memory))
        return self.norm3(query + self.linear2(self.activation(self.linear1(query))))


class _Layers(nn.Module):
    """Holds ``layers`` so state-dict keys read ``decoder.layers.N...`` as in Paddle."""

    def __init__(self, layers: list[DecoderLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, query: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            query = layer(query, memory)
        return query


class MLDecoder(nn.Module):
    """Attention-based multi-label head: feature map (or token sequence) -> ``[N, class_num]`` logits.

    Inputs as PaddleClas accepts them: ``[N, C, H, W]`` maps, ``[N, C, L]`` sequences,
    or ``[N, C]`` vectors (which become a one-token memory).
    """

    def __init__(
        self,
        class_num: int = 80,
        in_channels: int = 2048,
        query_num: int = 80,
        embed_dim: int = 768,
        depth: int = 1,
        num_heads: int = 8,
        mlp_hidden_dim: int = 2048,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.class_num = class_num
        self.in_channels = in_channels
        query_num = min(max(query_num, 1), class_num)
        self.query_num = query_num
        self.group_factor = math.ceil(class_num / query_num)
        self.input_proj = nn.Conv2d(in_channels, embed_dim, kernel_size=1)
        self.query_pos_embed = nn.Embedding(query_num, embed_dim)
        self.query_pos_embed.weight.requires_grad_(False)
        self.decoder = _Layers([DecoderLayer(embed_dim, num_heads, mlp_hidden_dim, activation) for _ in range(depth)])
        self.group_conv = nn.Conv2d(query_num * embed_dim, query_num * self.group_factor, kernel_size=1,
                                    groups=query_num)
        nn.init.normal_(self.query_pos_embed.weight)
        nn.init.xavier_normal_(self.group_conv.weight)
        nn.init.zeros_(self.group_conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x.reshape(x.shape[0], self.in_channels, -1, 1)
        elif x.ndim == 3:
            x = x.unsqueeze(-1)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"MLDecoder expects {self.in_channels} input channels, got shape {tuple(x.shape)}")
        memory = F.relu(self.input_proj(x)).flatten(2).transpose(1, 2)
        queries = self.query_pos_embed.weight.unsqueeze(0).expand(x.shape[0], -1, -1)
        decoded = self.decoder(queries, memory)  # [N, query_num, embed_dim]
        # The grouped 1x1 conv as one batched product: query q feeds outputs q*g .. q*g+g-1.
        weight = self.group_conv.weight.reshape(self.query_num, self.group_factor, -1)
        logits = torch.einsum("bqd,qgd->bqg", decoded, weight).flatten(1) + self.group_conv.bias
        return logits[:, : self.class_num]


class MLDecoderNet(nn.Module):
    """``backbone.forward_features`` -> ``neck`` (the backbone's own last conv, run on the full map) -> ML-Decoder."""

    def __init__(self, backbone: nn.Module, head: MLDecoder, neck: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck if neck is not None else nn.Identity()
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.backbone.forward_features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

