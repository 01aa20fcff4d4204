"""UI-JEPA's intent decoder: a frozen JEPA video encoder, a dense projection and a causal language model that
writes the user's intent (Fu et al. 2024, "UI-JEPA: Towards Active Perception of User Intent through Onscreen
User Activity", arXiv 2409.04081).

The algorithm (stage 2 of UI-JEPA; stage 1 pretrains the encoder with :class:`~jepa_lightning.methods.UIJEPA`):

1. ``z = encoder(video)``: the frozen encoder (loaded from the pretraining checkpoint, eval mode, no gradient)
   embeds a screen recording into a token grid ``[B, T' * H' * W', D]``. Optionally each temporal slot's
   ``H' x W'`` grid is average-pooled to ``video_pool`` so the language model sees fewer video tokens.
2. ``v = W z + b``: one dense layer maps the video tokens into the language model's input-embedding space.
3. The language model reads ``[v_1 ... v_N][bos][intent tokens][eos]`` as ``inputs_embeds``. The video tokens
   are prepended to the text with no extra position ids and no separator embeddings: the model's own positions
   run over the whole concatenation. Training is teacher-forced next-token prediction with the loss on the intent
   tokens and ``eos`` only (labels -100 on video tokens, ``bos`` and padding).
4. Inference feeds the prefix ``[v_1 ... v_N][bos]`` and decodes greedily (``num_beams=1``) or with beam search
   until ``eos``.

The language model is either a small GPT-2 built from a config and trained from scratch here, with a byte-level
BPE tokenizer trained on the DataModule's training intents (saved inside the Lightning checkpoint), or any local
pretrained causal-LM folder (``lm``), fine-tuned with LoRA adapters through ``peft`` (the paper fine-tunes a
small LLM, e.g. Phi-3, with LoRA) while the base weights stay frozen and out of the checkpoints.
"""

from __future__ import annotations

import csv
import inspect
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch import nn

from jepa_lightning.eval.checkpoint import load_encoder_weights
from jepa_lightning.eval.intent_similarity import IntentSimilarity, intent_similarity_scores
from jepa_lightning.optim import adamw_warmup_cosine

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"  # the scratch tokenizer's special tokens (ids 0, 1, 2)
TOKENIZER_KEY = "intent_tokenizer"  # where the scratch tokenizer's JSON lives in a Lightning checkpoint
IGNORE = -100  # label of positions without loss (cross_entropy's ignore_index)


def train_intent_tokenizer(corpus: Sequence[str], vocab_size: int = 512) -> Any:
    """A byte-level BPE tokenizer (``tokenizers``) trained on ``corpus``, wrapped as a ``transformers`` fast
    tokenizer with special tokens ``<pad>`` (0), ``<bos>`` (1), ``<eos>`` (2). Byte-level: any text encodes, even
    characters the corpus never showed. Its vocabulary holds at most ``vocab_size`` entries (fewer when the
    corpus has fewer merges to offer)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = [t for t in corpus if isinstance(t, str) and t.strip()]
    if not texts:
        raise ValueError("cannot train the intent tokenizer: the training intent corpus is empty")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + 3:
        raise ValueError(f"vocab_size={vocab_size} is too small for a byte-level BPE tokenizer: it needs at least "
                         f"{len(alphabet) + 3} (256 bytes + pad/bos/eos)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, BOS, EOS], initial_alphabet=alphabet,
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return _wrap_tokenizer(tok)


def _wrap_tokenizer(tok: Any) -> Any:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS)


def tokenizer_from_json(text: str) -> Any:
    """The scratch tokenizer back from its JSON string (as saved in a checkpoint)."""
    from tokenizers import Tokenizer

    return _wrap_tokenizer(Tokenizer.from_str(text))


class IntentDecoder(L.LightningModule):
    """Frozen video encoder -> ``Linear(embed_dim, lm_hidden)`` -> causal LM generating the intent text.

    Args:
        encoder: the video encoder (``encoder(video) -> [B, N, D]`` with ``embed_dim`` and ``grid_size``
            ``(T', H', W')``), frozen: loaded from ``checkpoint`` (the ``f"{checkpoint_key}."`` weights of a
            pretraining checkpoint, or a safetensors export), never trained, always in eval mode, and left out of
            this module's checkpoints (rebuilt from ``checkpoint``, which is in the hyper-parameters).
        input_key, text_key: batch keys of the video ``[B, C, T, H, W]`` and of the intent strings.
        video_pool: ``(h, w)``: average-pool each temporal slot's ``H' x W'`` token grid to ``h x w`` (the LM
            sees ``T' * h * w`` video tokens); ``None``: all ``T' * H' * W'`` tokens.
        lm: ``None``: a GPT-2 built from ``lm_layers`` / ``lm_dim`` / ``lm_heads`` (``lm_dropout``), trained from
            scratch with a byte-level BPE tokenizer of ``vocab_size`` entries trained in ``setup("fit")`` on the
            DataModule's training intents (``datamodule.intents_of("train")``). A string: a local folder with a
            pretrained causal LM and its tokenizer (``from_pretrained(lm, local_files_only=True)``), loaded in
            ``lm_dtype``.
        lora: wrap the LM with LoRA adapters (``peft``): only the adapters and the projection train. ``None``: on
            for a pretrained LM, off for the scratch GPT-2. ``lora_targets``: module names (``None``: peft's
            defaults for the architecture, or all linear layers where peft has none).
        max_text_tokens: intents are truncated to this many tokens (before ``eos``).
        num_beams, max_new_tokens: decoding in validation / test / predict (1: greedy).
        lr, start_lr, final_lr, warmup: AdamW learning rate, linear warm-up from ``start_lr`` over the first
            ``warmup`` fraction of optimizer steps, then cosine to ``final_lr``; ``weight_decay`` ->
            ``final_weight_decay`` on a cosine (the paper: lr 3e-4, weight decay 0.04 -> 0.4).
    """

    def __init__(self, encoder: nn.Module, checkpoint: str | None = None, checkpoint_key: str = "teacher",
                 input_key: str = "video", text_key: str = "intent", video_pool: tuple[int, int] | None = None,
                 lm: str | None = None, lm_layers: int = 4, lm_dim: int = 128, lm_heads: int = 4,
                 lm_dropout: float = 0.1, lm_dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32",
                 vocab_size: int = 512, max_text_tokens: int = 32, lora: bool | None = None, lora_rank: int = 16,
                 lora_alpha: int = 16, lora_dropout: float = 0.05, lora_targets: list[str] | None = None,
                 num_beams: int = 1, max_new_tokens: int = 24, lr: float = 3e-4, start_lr: float = 0.0,
                 final_lr: float = 1e-6, warmup: float = 0.05, weight_decay: float = 0.04,
                 final_weight_decay: float = 0.4, betas: tuple[float, float] = (0.9, 0.999)) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["encoder"])
        embed_dim, grid = getattr(encoder, "embed_dim", None), getattr(encoder, "grid_size", None)
        if not isinstance(embed_dim, int) or grid is None or len(grid) not in (2, 3):
            raise ValueError(f"IntentDecoder needs a video encoder with an integer `embed_dim` and a `grid_size` "
                             f"(T', H', W'); {type(encoder).__name__} has embed_dim={embed_dim!r}, "
                             f"grid_size={grid!r}")
        self.grid = (1, *grid) if len(grid) == 2 else tuple(int(g) for g in grid)
        if video_pool is not None:
            video_pool = tuple(int(v) for v in video_pool)  # type: ignore[assignment]
            if len(video_pool) != 2 or min(video_pool) < 1 or video_pool[0] > self.grid[1] \
                    or video_pool[1] > self.grid[2]:
                raise ValueError(f"video_pool must be (h, w) with 1 <= h <= {self.grid[1]} and 1 <= w <= "
                                 f"{self.grid[2]} (the encoder's spatial token grid), got {video_pool}")
        self.video_pool = video_pool
        spatial = math.prod(video_pool) if video_pool is not None else self.grid[1] * self.grid[2]
        self.num_video_tokens = self.grid[0] * spatial
        for name, value in (("max_text_tokens", max_text_tokens), ("max_new_tokens", max_new_tokens),
                            ("num_beams", num_beams)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 0.0 <= warmup < 1.0:
            raise ValueError(f"warmup is a fraction of training in [0, 1), got {warmup}")

        if checkpoint is not None:
            load_encoder_weights(encoder, checkpoint, checkpoint_key)
        self.encoder = encoder.requires_grad_(False).eval()

        self.tokenizer: Any = None  # scratch LM: trained in setup("fit") or restored from a checkpoint
        if lm is None:
            self.lm = self._scratch_lm()
        else:
            self.lm, self.tokenizer = self._pretrained_lm(lm)
        self.pretrained = lm is not None
        self.lora = self.pretrained if lora is None else lora
        if self.lora:
            self.lm = self._with_lora(self.lm)
        self.lm_dim = self.lm.get_input_embeddings().embedding_dim
        self.proj = nn.Linear(embed_dim, self.lm_dim)  # the paper's dense projection into the LM's input space
        nn.init.trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)
        self._logits_to_keep = "logits_to_keep" in inspect.signature(self._base_lm().forward).parameters
        self.val_similarity = IntentSimilarity()
        self.test_similarity = IntentSimilarity()

    # ---------------------------------------------------------------- language model
    def _scratch_lm(self) -> nn.Module:
        from transformers import GPT2Config, GPT2LMHeadModel

        hp = self.hparams
        if hp.max_new_tokens > hp.max_text_tokens + 1:
            raise ValueError(f"max_new_tokens={hp.max_new_tokens} > max_text_tokens + 1 = {hp.max_text_tokens + 1}:"
                             f" the scratch GPT-2 has positions (and training) for max_text_tokens + eos only")
        config = GPT2Config(vocab_size=hp.vocab_size, n_positions=self.num_video_tokens + hp.max_text_tokens + 2,
                            n_embd=hp.lm_dim, n_layer=hp.lm_layers, n_head=hp.lm_heads, resid_pdrop=hp.lm_dropout,
                            embd_pdrop=hp.lm_dropout, attn_pdrop=hp.lm_dropout, bos_token_id=1, eos_token_id=2,
                            pad_token_id=0)
        return GPT2LMHeadModel(config)

    def _pretrained_lm(self, folder: str) -> tuple[nn.Module, Any]:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        path = os.path.abspath(os.path.expanduser(folder))
        if not os.path.isfile(os.path.join(path, "config.json")):
            what = "does not exist" if not os.path.exists(path) else "has no config.json"
            raise FileNotFoundError(f"lm folder '{folder}' ({path}) {what}: expected a local pretrained causal LM "
                                    f"saved with save_pretrained (config.json, weights, tokenizer files); download "
                                    f"it there, or set lm: null for the scratch GPT-2")
        dtype = self.hparams.lm_dtype
        dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        if torch.empty(0).device.type == "meta":  # building on the meta device: no weights to load, the config
            config = AutoConfig.from_pretrained(path, local_files_only=True)  # is enough (from_pretrained refuses)
            lm = AutoModelForCausalLM.from_config(config, dtype=None if dtype == "auto" else dtype)
        else:
            lm = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if tokenizer.eos_token_id is None:
            raise ValueError(f"the tokenizer in '{folder}' has no eos token: the decoder needs one to end intents")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        limit = getattr(lm.config.get_text_config(), "max_position_embeddings", None)
        need = self.num_video_tokens + max(self.hparams.max_text_tokens + 2, self.hparams.max_new_tokens + 1)
        if isinstance(limit, int) and need > limit:
            raise ValueError(f"{need} positions ({self.num_video_tokens} video tokens + text) exceed the "
                             f"max_position_embeddings={limit} of '{folder}': pool the video tokens (video_pool) "
                             f"or shorten max_text_tokens / max_new_tokens")
        return lm, tokenizer

    def _with_lora(self, lm: nn.Module) -> nn.Module:
        from peft import LoraConfig, get_peft_model
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

        hp = self.hparams
        targets: Any = hp.lora_targets
        if targets is None and lm.config.model_type not in TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING:
            targets = "all-linear"  # peft has no default for this architecture
        config = LoraConfig(r=hp.lora_rank, lora_alpha=hp.lora_alpha, lora_dropout=hp.lora_dropout,
                            target_modules=targets, task_type="CAUSAL_LM")
        return get_peft_model(lm, config)

    def _base_lm(self) -> nn.Module:
        return self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm

    def _require_tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise RuntimeError("IntentDecoder has no tokenizer: the scratch GPT-2's tokenizer is trained in "
                               "`fit` (setup) on the training intents, or restored from a checkpoint of this "
                               "module (--ckpt_path / IntentDecoder.load_from_checkpoint); or call "
                               "`set_tokenizer(train_intent_tokenizer(corpus, vocab_size))`")
        return self.tokenizer

    def set_tokenizer(self, tokenizer: Any) -> None:
        """Use ``tokenizer`` (a ``transformers`` tokenizer with eos; pad falls back to eos, bos to eos)."""
        if not self.pretrained and len(tokenizer) > self.hparams.vocab_size:
            raise ValueError(f"the tokenizer has {len(tokenizer)} entries, more than the LM's "
                             f"vocab_size={self.hparams.vocab_size}")
        self.tokenizer = tokenizer

    @property
    def special_ids(self) -> tuple[int, int, int]:
        """(pad, bos, eos) ids; a tokenizer without pad or bos uses eos for them."""
        tok = self._require_tokenizer()
        eos = tok.eos_token_id
        bos = tok.bos_token_id if tok.bos_token_id is not None else eos
        pad = tok.pad_token_id if tok.pad_token_id is not None else eos
        return pad, bos, eos

    def setup(self, stage: str) -> None:
        if stage != "fit" or self.tokenizer is not None:
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        intents_of = getattr(datamodule, "intents_of", None)
        if not callable(intents_of):
            raise TypeError(f"IntentDecoder trains its tokenizer on the training intents, read with "
                            f"`datamodule.intents_of('train')`, but the datamodule "
                            f"({type(datamodule).__name__}) has no such method; use "
                            f"datamodules.ui.UIRecordingsDataModule, or set a tokenizer (set_tokenizer) first")
        corpus = intents_of("train")
        self.set_tokenizer(train_intent_tokenizer(corpus, self.hparams.vocab_size))
        rank_zero_info(f"IntentDecoder: trained a {len(self.tokenizer)}-entry byte-level BPE tokenizer on "
                       f"{len(corpus)} training intents")

    # fail before the first batch (after a --ckpt_path restore, which comes after `setup`) without a tokenizer
    def on_validation_start(self) -> None:
        self._require_tokenizer()

    def on_test_start(self) -> None:
        self._require_tokenizer()

    def on_predict_start(self) -> None:
        self._require_tokenizer()

    # ---------------------------------------------------------------- frozen encoder, checkpoints
    def train(self, mode: bool = True) -> IntentDecoder:
        super().train(mode)
        self.encoder.eval()  # no dropout / drop-path in the frozen encoder
        return self

    def _frozen_keys(self) -> dict[str, torch.Tensor]:
        """State entries that checkpoints leave out (they come from `checkpoint` / the `lm` folder): the encoder
        and, for a pretrained LM, its frozen base weights."""
        state = self.state_dict()
        frozen = {k: v for k, v in state.items() if k.startswith("encoder.")}
        if self.pretrained:
            trainable = {f"lm.{n}" for n, p in self.lm.named_parameters() if p.requires_grad}
            frozen.update({k: v for k, v in state.items() if k.startswith("lm.") and k not in trainable})
        return frozen

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in self._frozen_keys():
            state.pop(key, None)
        if not self.pretrained and self.tokenizer is not None:
            checkpoint[TOKENIZER_KEY] = self.tokenizer.backend_tokenizer.to_str()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if not self.pretrained and TOKENIZER_KEY in checkpoint:
            self.set_tokenizer(tokenizer_from_json(checkpoint[TOKENIZER_KEY]))

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        # checkpoints carry neither the encoder nor a pretrained LM's base weights: keep the current ones, and
        # stay strict about everything else
        state_dict = dict(state_dict)
        for key, value in self._frozen_keys().items():
            state_dict.setdefault(key, value)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the pipeline: ``encoder``, ``projection``, ``lm`` (with LoRA adapters), ``trainable``."""
        def count(module: nn.Module) -> int:
            return sum(p.numel() for p in module.parameters())
        return {"encoder": count(self.encoder), "projection": count(self.proj), "lm": count(self.lm),
                "trainable": sum(p.numel() for p in self.parameters() if p.requires_grad)}

    # ---------------------------------------------------------------- model
    def video_tokens(self, video: torch.Tensor) -> torch.Tensor:
        """Video [B, C, T, H, W] -> projected video tokens [B, N_video, lm_hidden] (encoder frozen)."""
        with torch.no_grad():
            z = self.encoder(video)  # [B, T' * H' * W', D] in (t, h, w) order
        if self.video_pool is not None:
            t, h, w = self.grid
            b, d = z.size(0), z.size(-1)
            grid = z.reshape(b * t, h, w, d).permute(0, 3, 1, 2)
            z = F.adaptive_avg_pool2d(grid, self.video_pool).flatten(2).transpose(1, 2).reshape(b, -1, d)
        return self.proj(z)

    def _with_text(self, video_tokens: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``[video tokens][embeddings of ids]`` in the LM's embedding dtype (a bf16 LM takes bf16 inputs; under
        autocast an fp32 LM takes fp32 inputs and autocast casts them)."""
        table = self.lm.get_input_embeddings()
        return torch.cat([video_tokens.to(table.weight.dtype), table(ids)], dim=1)

    def tokenize(self, texts: Sequence[str], device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Intent strings -> right-padded token ids [B, L] (pad id; at most ``max_text_tokens`` each) and the
        lengths [B]."""
        tok = self._require_tokenizer()
        pad = self.special_ids[0]
        encoded = tok(list(texts), add_special_tokens=False)["input_ids"]
        rows = [torch.tensor(ids[:self.hparams.max_text_tokens], dtype=torch.long) for ids in encoded]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long, device=device)
        ids = nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad) if rows else \
            torch.empty(0, 0, dtype=torch.long)
        return ids.to(device), lengths

    def build_inputs(self, video_tokens: torch.Tensor, text_ids: torch.Tensor,
                     lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[video tokens][bos][text][eos][pad...]`` -> ``inputs_embeds`` [B, N, H], ``attention_mask`` [B, N]
        and ``labels`` [B, N]: the token ids on the text and eos positions, -100 on video tokens, bos and
        padding. (``text_ids`` [B, L] right-padded, ``lengths`` [B] their text lengths.)"""
        pad, bos, eos = self.special_ids
        b, n_text = text_ids.shape
        device = video_tokens.device
        text_ids, lengths = text_ids.to(device), lengths.to(device)
        ids = torch.cat([torch.full((b, 1), bos, dtype=torch.long, device=device), text_ids,
                         torch.full((b, 1), pad, dtype=torch.long, device=device)], dim=1)
        ids.scatter_(1, (lengths + 1)[:, None], eos)  # eos right after the text
        pos = torch.arange(n_text + 2, device=device)
        valid = pos[None] <= (lengths + 1)[:, None]  # bos, text, eos
        ids = ids.masked_fill(~valid, pad)
        n_video = video_tokens.size(1)
        embeds = self._with_text(video_tokens, ids)
        mask = torch.cat([torch.ones(b, n_video, dtype=torch.long, device=device), valid.long()], dim=1)
        text_labels = ids.masked_fill(~valid | (pos[None] == 0), IGNORE)
        labels = torch.cat([torch.full((b, n_video), IGNORE, dtype=torch.long, device=device), text_labels], dim=1)
        return embeds, mask, labels

    def loss(self, video: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Teacher-forced next-token cross-entropy (fp32), averaged over the text + eos tokens of the batch."""
        tokens = self.video_tokens(video)
        return self.text_loss(tokens, *self.tokenize(texts, tokens.device))

    def text_loss(self, video_tokens: torch.Tensor, text_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The loss of :meth:`loss` from projected video tokens and right-padded text ids (see `build_inputs`)."""
        tokens = video_tokens
        embeds, mask, labels = self.build_inputs(tokens, text_ids, lengths)
        n_text = labels.size(1) - tokens.size(1)  # bos + text + eos/pad: the only positions with targets
        kwargs = {"logits_to_keep": n_text} if self._logits_to_keep else {}
        logits = self.lm(inputs_embeds=embeds, attention_mask=mask, **kwargs).logits[:, -n_text:]
        # the logit at position i predicts the token at i + 1
        return F.cross_entropy(logits[:, :-1].float().flatten(0, 1), labels[:, -n_text + 1:].flatten(),
                               ignore_index=IGNORE)

    @torch.no_grad()
    def generate_ids(self, video: torch.Tensor, num_beams: int | None = None,
                     max_new_tokens: int | None = None) -> torch.Tensor:
        """Generated token ids [B, <= max_new_tokens] for a video batch [B, C, T, H, W], pad after the first eos:
        the prefix ``[video tokens][bos]`` is fed as ``inputs_embeds``; greedy (``num_beams=1``) or beam-search
        decoding until eos or ``max_new_tokens``."""
        from transformers import GenerationConfig

        num_beams = num_beams or self.hparams.num_beams
        max_new_tokens = max_new_tokens or self.hparams.max_new_tokens
        pad, bos, eos = self.special_ids
        tokens = self.video_tokens(video)
        b = tokens.size(0)
        prefix = self._with_text(tokens, torch.full((b, 1), bos, device=tokens.device))
        mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device)
        config = GenerationConfig(max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False,
                                  early_stopping=num_beams > 1, bos_token_id=bos, eos_token_id=eos,
                                  pad_token_id=pad)
        was_training = self.lm.training
        self.lm.eval()
        try:
            # decoder-only models fed inputs_embeds alone return the new tokens only
            out = self.lm.generate(inputs_embeds=prefix, attention_mask=mask, generation_config=config)
        finally:
            self.lm.train(was_training)
        return out.masked_fill((out == eos).long().cumsum(1) > 0, pad)  # nothing after the first eos

    def generate(self, video: torch.Tensor, num_beams: int | None = None,
                 max_new_tokens: int | None = None) -> list[str]:
        """Intent strings for a video batch (see :meth:`generate_ids`), special tokens and extra spaces removed."""
        ids = self.generate_ids(video, num_beams, max_new_tokens)
        texts = self._require_tokenizer().batch_decode(ids.tolist(), skip_special_tokens=True)
        return [" ".join(t.split()) for t in texts]

    def forward(self, video: torch.Tensor) -> list[str]:
        return self.generate(video)

    # ---------------------------------------------------------------- steps
    def _inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, list[str]]:
        for key in (self.hparams.input_key, self.hparams.text_key):
            if key not in batch:
                raise KeyError(f"IntentDecoder: batch has no key '{key}'; batch keys: {sorted(batch)}")
        return batch[self.hparams.input_key], list(batch[self.hparams.text_key])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        video, texts = self._inputs(batch)
        loss = self.loss(video, texts)
        b = video.size(0)
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=b)
        return loss

    def _eval_step(self, batch: dict[str, Any] | None, stage: str, metric: IntentSimilarity) -> None:
        if batch is None:  # every sample unreadable (the DataModule reported them)
            return
        video, texts = self._inputs(batch)
        b = video.size(0)
        self.log(f"{stage}/loss", self.loss(video, texts), sync_dist=True, batch_size=b)
        metric.update(self.generate(video), texts)

    def _log_similarity(self, stage: str, metric: IntentSimilarity) -> None:
        if metric.update_called:
            self.log_dict({f"{stage}/{k}": v for k, v in metric.compute().items()})
        metric.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_similarity)

    def on_validation_epoch_end(self) -> None:
        self._log_similarity("val", self.val_similarity)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_similarity)

    def on_test_epoch_end(self) -> None:
        self._log_similarity("test", self.test_similarity)

    def predict_step(self, batch: dict[str, Any] | None, batch_idx: int, dataloader_idx: int = 0
                     ) -> list[dict[str, Any]]:
        """Per recording: ``{"path", "category", "reference", "prediction"}`` (missing keys give None)."""
        if batch is None:  # every sample unreadable
            return []
        video, texts = self._inputs(batch)
        preds = self.generate(video)
        paths = batch.get("path") or [None] * len(preds)
        cats = batch.get("category")
        cats = cats.tolist() if isinstance(cats, torch.Tensor) else (cats or [None] * len(preds))
        return [{"path": p, "category": c, "reference": r, "prediction": q}
                for p, c, r, q in zip(paths, cats, texts, preds, strict=True)]

    # ---------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        return adamw_warmup_cosine(self.trainer, [self.proj, self.lm], owner="IntentDecoder", lr=hp.lr,
                                   start_lr=hp.start_lr, final_lr=hp.final_lr, warmup=hp.warmup,
                                   weight_decay=hp.weight_decay, final_weight_decay=hp.final_weight_decay,
                                   betas=tuple(hp.betas))


class IntentPredictionWriter(Callback):
    """Writes ``predict``'s outputs of an :class:`IntentDecoder` as a CSV (one row per recording: path, category,
    category name when the DataModule has ``category_names``, reference, prediction, and the per-sample Intent
    Similarity with its components), on rank 0 after gathering every rank's rows. ``output``: the CSV's path
    (default: ``predictions.csv`` in the run folder)."""

    FIELDS = ("path", "category", "category_name", "reference", "prediction")

    def __init__(self, output: str | None = None) -> None:
        self.output = output
        self.rows: list[dict[str, Any]] = []
        self.written: str | None = None

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows = []

    def on_predict_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        if outputs:
            self.rows.extend(dict(r) for r in outputs)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        rows = self.rows
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, rows)
            # a distributed sampler repeats a few recordings to even out the ranks: keep each path once
            seen: set[str] = set()
            rows = [r for part in gathered for r in part
                    if r.get("path") is None or not (r["path"] in seen or seen.add(r["path"]))]
        if not trainer.is_global_zero:
            return
        names = getattr(trainer.datamodule, "category_names", None) if trainer.datamodule is not None else None
        for r in rows:
            c = r.get("category")
            r["category_name"] = names[c] if names is not None and isinstance(c, int) and 0 <= c < len(names) \
                else ""
        scores: dict[str, torch.Tensor] = {}
        if rows:
            scores = intent_similarity_scores([r["prediction"] for r in rows], [r["reference"] for r in rows])
        output = self.output or os.path.join(trainer.log_dir or trainer.default_root_dir, "predictions.csv")
        path = os.path.abspath(os.path.expanduser(output))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=[*self.FIELDS, *scores])
            writer.writeheader()
            for i, r in enumerate(rows):
                writer.writerow({**{k: r.get(k, "") for k in self.FIELDS},
                                 **{k: f"{float(v[i]):.6f}" for k, v in scores.items()}})
        self.written = path
        mean = f", mean intent similarity {scores['intent_similarity'].float().mean():.4f}" \
            if "intent_similarity" in scores else ""
        rank_zero_info(f"IntentPredictionWriter: wrote {len(rows)} predictions to {path}{mean}")
