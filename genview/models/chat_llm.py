"""The caption-complexity chat model (role ``models.complexity_llm``): a loader and a tiny offline stand-in.

``load_chat_model`` returns an object whose ``generate(messages) -> str`` is what
:func:`genview.analysis.complexity.llm_scores` calls. ``build_tiny_chat_model`` writes a random-weight Llama and a
byte-level tokenizer in transformers' own format, so the embedded default loads through the same code as a real
checkpoint (its answers are gibberish, and the scorer falls back to the lexical score after its re-asks).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from genview.errors import GenviewError
from genview.models import is_local_path
from genview.models.offline import hub_cache_dir, is_offline, missing_offline_error

ROLE = "models.complexity_llm"
DEFAULT_MAX_NEW_TOKENS = 1000  # the official scorer's

# Role headers are spelled out as text: the byte-level vocabulary covers any string, so no extra tokens are needed.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
TINY_SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
TINY_SEED = 0


class ChatModel:
    """A causal LM and its tokenizer answering chat messages.

    ``do_sample`` None decodes as the model's own generation config says (the official scorer's behaviour; chat
    models usually sample); True or False forces sampling or greedy decoding. Every answer is drawn from a
    generator seeded by (``seed``, the prompt text), so an answer depends on neither the shard nor the order of the
    captions, and a rerun gives the same answers.
    """

    def __init__(
        self,
        model,
        tokenizer,
        device: str,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        do_sample: bool | None = None,
        seed: int = 0,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.do_sample = do_sample
        self.seed = seed

    def _prompt(self, messages: list[dict[str, str]]) -> tuple[str, bool]:
        """The prompt text, and whether the tokenizer should still add its special tokens (bos)."""
        if self.tokenizer.chat_template is not None:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return text, False  # the template writes its own special tokens
        # Base models have no chat template; the turns as plain paragraphs still give them text to continue.
        return "\n\n".join(message["content"] for message in messages) + "\n", True

    def generate(self, messages: list[dict[str, str]]) -> str:
        import torch

        text, add_special_tokens = self._prompt(messages)
        inputs = self.tokenizer(text, return_tensors="pt", add_special_tokens=add_special_tokens).to(self.device)
        pad_token_id = self.tokenizer.pad_token_id
        decoding = {} if self.do_sample is None else {"do_sample": self.do_sample}
        devices = [torch.device(self.device).index or 0] if str(self.device).startswith("cuda") else []
        with torch.inference_mode(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(prompt_seed(self.seed, text))
            output = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=self.tokenizer.eos_token_id if pad_token_id is None else pad_token_id,
                **decoding,
            )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True)


def prompt_seed(seed: int, text: str) -> int:
    digest = hashlib.sha256(f"{seed}\0{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


def load_chat_model(
    path: str,
    *,
    trust_remote_code: bool = False,
    device: str = "cpu",
    dtype=None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    do_sample: bool | None = None,
    seed: int = 0,
) -> ChatModel:
    """Load a transformers chat model from a local folder or hub id (bf16 on CUDA, fp32 on CPU unless ``dtype``)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(path).expanduser()
    if is_local_path(path) and not local.is_dir():
        raise GenviewError(f"{ROLE}: no model folder at {path!r}")
    source = str(local) if local.is_dir() else path
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    hub = dict(cache_dir=hub_cache_dir(), local_files_only=is_offline())
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **hub)
        model = AutoModelForCausalLM.from_pretrained(source, trust_remote_code=trust_remote_code, dtype=dtype, **hub)
    except (OSError, ValueError) as error:  # missing files, unknown hub id, code that needs trust_remote_code
        if hub["local_files_only"] and not local.is_dir():
            raise missing_offline_error(ROLE.removeprefix("models."), path, str(error)) from error
        raise GenviewError(f"{ROLE}: cannot load a chat model from {path!r}: {error}") from error
    return ChatModel(model.to(device).eval(), tokenizer, device, max_new_tokens, do_sample, seed)


def _tiny_tokenizer():
    """Byte-level BPE without merges: one token per byte, so every caption and "[score: 1]" can be spelled."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = list(TINY_SPECIAL_TOKENS.values())
    vocab = {token: i for i, token in enumerate(specials + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **TINY_SPECIAL_TOKENS)
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def build_tiny_chat_model(out_dir: str | os.PathLike) -> Path:
    """Write a tiny random-weight Llama chat model and its tokenizer to ``out_dir`` (offline, deterministic)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,  # room for the system prompt spelled byte by byte
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():  # same weights on every build without touching the caller's RNG
        torch.manual_seed(TINY_SEED)
        model = LlamaForCausalLM(config)
    out_dir = Path(out_dir)
    tokenizer.save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return out_dir
