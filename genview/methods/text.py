"""The CLIP text side: open_clip's bundled BPE tokenizer and a text tower built from its ``TextTransformer``.

open_clip is imported inside the functions: the method registry imports every method module, and open_clip
takes seconds to import, which the two-view methods should not pay.
"""

from __future__ import annotations

import torch
from torch import nn

#: Size of open_clip's bundled BPE vocabulary (256 bytes, their 256 word-final forms, 48,894 merges and the
#: start/end-of-text tokens); the text tower's token embedding has one row per id.
VOCAB_SIZE = 49408


def tokenize(captions: list[str], context_length: int) -> torch.LongTensor:
    """Token ids (len(captions), context_length): start-of-text, BPE ids, end-of-text, zero padding.

    A caption longer than the context is cut and its last id replaced by end-of-text (as OpenAI's
    ``truncate=True``), so the end-of-text token, where the text tower pools, is always present.
    """
    from open_clip.tokenizer import tokenize as open_clip_tokenize

    return open_clip_tokenize(list(captions), context_length=context_length)


def build_text_tower(
    width: int, heads: int, layers: int, context_length: int, embed_dim: int, *, quick_gelu: bool = True
) -> nn.Module:
    """A causal text transformer mapping token ids (B, context_length) to text features (B, embed_dim).

    The features are read at the end-of-text token (the largest id in each row) after the final LayerNorm and
    projected linearly to ``embed_dim``. ``quick_gelu`` selects the activation of the original CLIP, which the
    official GenView++ text tower uses.
    """
    from open_clip.transformer import QuickGELU, TextTransformer

    return TextTransformer(
        context_length=context_length,
        vocab_size=VOCAB_SIZE,
        width=width,
        heads=heads,
        layers=layers,
        output_dim=embed_dim,
        pool_type="argmax",
        act_layer=QuickGELU if quick_gelu else nn.GELU,
    )
