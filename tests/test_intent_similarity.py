"""UI-JEPA's Intent Similarity metric: hand-computed ROUGE, an independent cosine, running means, errors."""

import math
import socket

import pytest
import torch
from torch import nn

from jepa_lightning.eval import intent_similarity as intent_sim
from jepa_lightning.eval.intent_similarity import (
    SCORE_KEYS,
    IntentSimilarity,
    cosine_scores,
    intent_similarity_scores,
    rouge_scores,
)


def f_measure(matches: int, pred_len: int, target_len: int) -> float:
    precision, recall = matches / pred_len, matches / target_len
    return 2 * precision * recall / (precision + recall)


def test_identical_strings_score_one(one_thread):
    texts = ["turn on wifi in settings", "send a message to Alice saying hello", "search for pizza in maps"]
    metric = IntentSimilarity()
    metric.update(texts, texts)
    result = metric.compute()
    assert set(result) == set(SCORE_KEYS)
    assert all(v.shape == () for v in result.values())
    assert result["cosine"].item() == pytest.approx(1.0, abs=1e-5)
    for key in ("rouge1", "rouge2", "rougeL"):
        assert result[key].item() == pytest.approx(1.0, abs=1e-7)
    assert result["intent_similarity"].item() == pytest.approx(1.0, abs=1e-5)


def test_rouge_against_hand_computation():
    # rouge_score lower-cases, splits on non-[a-z0-9] and Porter-stems ("settings" -> "set" on both sides):
    # pred   = open settings and turn on wifi  (6 tokens)
    # target = turn on wifi in settings        (5 tokens)
    pred, target = "Open settings and turn on wifi", "turn on wifi in settings"
    # unigrams in common: settings, turn, on, wifi = 4
    rouge1 = f_measure(4, 6, 5)
    # bigrams: pred {open settings, settings and, and turn, turn on, on wifi} (5),
    # target {turn on, on wifi, wifi in, in settings} (4); in common: turn on, on wifi = 2
    rouge2 = f_measure(2, 5, 4)
    # longest common subsequence: "turn on wifi" = 3 ("settings" comes first in pred, last in target)
    rouge_l = f_measure(3, 6, 5)
    assert (rouge1, rouge2, rouge_l) == pytest.approx((8 / 11, 4 / 9, 6 / 11))
    scores = rouge_scores([pred], [target])
    assert scores["rouge1"].item() == pytest.approx(rouge1, abs=1e-6)
    assert scores["rouge2"].item() == pytest.approx(rouge2, abs=1e-6)
    assert scores["rougeL"].item() == pytest.approx(rouge_l, abs=1e-6)
    # a prediction that is a prefix of the target: P = 1, R < 1 (unigrams 3 of 3 vs 5, bigrams 2 of 2 vs 4)
    short = rouge_scores(["turn on wifi"], [target])
    assert short["rouge1"].item() == pytest.approx(f_measure(3, 3, 5), abs=1e-6)
    assert short["rouge2"].item() == pytest.approx(f_measure(2, 2, 4), abs=1e-6)


def test_rouge_tokenizer_splits_hyphens_and_stems():
    # "wi-fi" is two tokens (wi, fi): identical to "wi fi", and "turn on wi-fi" vs "turn on wifi" shares 2 of
    # 4 vs 3 unigrams and 1 of 3 vs 2 bigrams ("turn on")
    same = rouge_scores(["turn on Wi-Fi"], ["turn on wi fi"])
    assert all(v.item() == pytest.approx(1.0) for v in same.values())
    split = rouge_scores(["turn on wi-fi"], ["turn on wifi"])
    assert split["rouge1"].item() == pytest.approx(f_measure(2, 4, 3), abs=1e-6)
    assert split["rouge2"].item() == pytest.approx(f_measure(1, 3, 2), abs=1e-6)
    stemmed = rouge_scores(["turning on the setting"], ["turn on the settings"])  # stems: turn, set
    assert stemmed["rouge1"].item() == pytest.approx(1.0)


def test_empty_prediction_scores_zero_rouge(one_thread):
    scores = intent_similarity_scores(["", "!!!"], ["turn on wifi in settings", "open the camera"])
    for key in ("rouge1", "rouge2", "rougeL"):
        assert scores[key].tolist() == [0.0, 0.0]
    assert ((scores["cosine"] >= 0) & (scores["cosine"] <= 1)).all()
    metric = IntentSimilarity()
    metric.update([], [])  # an empty batch adds nothing and does not crash
    metric.update([""], ["open the camera"])
    assert metric.count.item() == 1
    assert metric.compute()["rouge1"].item() == 0.0


def test_cosine_matches_sentence_transformers_and_ranks_related_pairs(one_thread):
    from sentence_transformers import SentenceTransformer

    pred, target = "enable wi-fi from the settings app", "turn on wifi in settings"
    unrelated = "send a message to Bob saying I am running late"
    reference = SentenceTransformer(intent_sim.resolve_embedding_model(), device="cpu", local_files_only=True)
    a, b = reference.encode([pred, target], convert_to_tensor=True, normalize_embeddings=True)
    cos = cosine_scores([pred, unrelated], [target, target])
    assert cos[0].item() == pytest.approx(max(float(a @ b), 0.0), abs=1e-5)
    assert cos[0] > cos[1] + 0.2  # the related phrasing is far closer than an unrelated intent
    assert 0.0 <= cos[1].item() < cos[0].item() <= 1.0


def test_intent_similarity_is_mean_of_components_and_running_mean(one_thread):
    preds = ["open settings and turn on wifi", "call mom", "", "search for pizza in maps", "play some jazz"]
    targets = ["turn on wifi in settings", "call mom", "open the camera", "find pizza places in maps", "play jazz"]
    per_pair = intent_similarity_scores(preds, targets)
    assert all(v.shape == (5,) and v.dtype == torch.float32 for v in per_pair.values())
    components = torch.stack([per_pair[k] for k in ("cosine", "rouge1", "rouge2", "rougeL")])
    torch.testing.assert_close(per_pair["intent_similarity"], components.mean(0))
    assert ((components >= 0) & (components <= 1)).all()

    metric = IntentSimilarity()
    metric.update(preds[:2], targets[:2])
    metric.update(preds[2:], targets[2:])
    result = metric.compute()
    for key in SCORE_KEYS:  # the mean over all pairs, not the mean of the two batch means
        assert result[key].item() == pytest.approx(per_pair[key].mean().item(), abs=1e-6)
    assert result["intent_similarity"].item() != pytest.approx(
        (per_pair["intent_similarity"][:2].mean() + per_pair["intent_similarity"][2:].mean()).item() / 2)

    # DDP: the states are summed over processes; merge_state applies the same reduction
    other = IntentSimilarity()
    metric.reset()
    metric.update(preds[:1], targets[:1])
    other.update(preds[1:], targets[1:])
    metric.merge_state(other)
    assert metric.compute()["intent_similarity"].item() == pytest.approx(
        per_pair["intent_similarity"].mean().item(), abs=1e-6)

    # reset -> no pairs: NaN (0 / 0, as torchmetrics' MeanMetric) with torchmetrics' warning
    metric.reset()
    assert metric.count.item() == 0
    with pytest.warns(UserWarning, match="before the ``update``"):
        empty = metric.compute()
    assert all(math.isnan(v.item()) for v in empty.values())
    metric.update("call mom", "call mom")  # a single string is one pair, not a sequence of characters
    assert metric.count.item() == 1 and metric.compute()["rouge1"].item() == pytest.approx(1.0)


def test_shift_and_clip_mappings(monkeypatch, one_thread):
    preds, targets = ["turn on wifi in settings", "play some jazz"], ["enable wifi", "what is the weather"]
    clip = intent_similarity_scores(preds, targets, cosine="clip")
    shift = intent_similarity_scores(preds, targets, cosine="shift")
    assert (clip["cosine"] >= 0).all()  # these real pairs have cos >= 0: shift = (clip + 1) / 2
    torch.testing.assert_close(shift["cosine"], (clip["cosine"] + 1) / 2)
    torch.testing.assert_close(shift["intent_similarity"] - clip["intent_similarity"],
                               (shift["cosine"] - clip["cosine"]) / 4)
    torch.testing.assert_close(shift["rougeL"], clip["rougeL"])

    # a negative cosine (controlled embeddings): clip -> 0, shift -> (cos + 1) / 2
    vectors = {"a": [1.0, 0.0], "b": [-0.6, 0.8], "c": [0.6, 0.8]}  # cos(a, b) = -0.6, cos(a, c) = 0.6
    monkeypatch.setattr(intent_sim, "embed_sentences",
                        lambda texts, *args, **kwargs: torch.tensor([vectors[t] for t in texts]))
    assert cosine_scores(["a", "a"], ["b", "c"], cosine="clip").tolist() == pytest.approx([0.0, 0.6])
    assert cosine_scores(["a", "a"], ["b", "c"], cosine="shift").tolist() == pytest.approx([0.2, 0.8])


def test_encoder_stays_out_of_state_dict_and_module_tree(one_thread):
    metric = IntentSimilarity()
    metric.update(["turn on wifi"], ["turn on bluetooth"])
    holder = nn.ModuleDict({"intent": metric})  # as a LightningModule attribute would be saved
    assert all(not key.endswith("weight") and "embeddings" not in key for key in holder.state_dict())
    assert list(metric.parameters()) == [] and list(metric.children()) == []
    assert all(not isinstance(v, nn.Module) for v in vars(metric).values())
    encoder = intent_sim.load_sentence_encoder(metric.embedding_model, metric.device)  # cached: no reload
    assert encoder is intent_sim.load_sentence_encoder(None, "cpu")


def test_encoder_loads_offline_once(monkeypatch):
    monkeypatch.setattr(intent_sim, "_ENCODERS", {})  # force a fresh load from disk

    def no_network(*args, **kwargs):
        raise AssertionError("the sentence encoder must load without network access")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    first = intent_sim.load_sentence_encoder(None, "cpu")
    assert first is intent_sim.load_sentence_encoder(None, torch.device("cpu"))
    assert first.pooling == "mean" and first.max_length == 256  # from 1_Pooling and sentence_bert_config
    assert not first.model.training and not any(p.requires_grad for p in first.model.parameters())


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="2 preds and 3 targets"):
        rouge_scores(["a", "b"], ["a", "b", "c"])
    metric = IntentSimilarity()
    with pytest.raises(ValueError, match="1 preds and 2 targets"):
        metric.update(["a"], ["a", "b"])
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        IntentSimilarity(embedding_model=str(missing))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        intent_sim.load_sentence_encoder(tmp_path, "cpu")  # an existing folder that holds no model
    with pytest.raises(ValueError, match="'clip' or 'shift'"):
        IntentSimilarity(cosine="cos")
    with pytest.raises(TypeError, match=r"targets\[1\] must be a str"):
        rouge_scores(["a", "b"], ["a", None])
