"""UI-JEPA's intent decoder: loss on the text tokens only, generation, the tokenizer trained on the DataModule's
intents and restored from checkpoints, a pretrained LM with LoRA, and the CLI (fit / validate / predict)."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT
from safetensors.torch import save_file

pytest.importorskip("av")
pytest.importorskip("peft")

from datamodules.ui import UIRecordingsDataModule, read_ui_annotations  # noqa: E402
from jepa_lightning.cli import JEPACLI  # noqa: E402
from jepa_lightning.methods.ui_intent import (  # noqa: E402
    IGNORE,
    TOKENIZER_KEY,
    IntentDecoder,
    IntentPredictionWriter,
    train_intent_tokenizer,
)
from jepa_lightning.nn import VisionTransformer  # noqa: E402

RECIPES = ROOT / "recipes" / "ui_jepa"
INTENTS = ["open Maps", "search for headphones in Shopzy", "turn on wi-fi", "send a message to Maria"]
ENCODER = {"img_size": (32, 16), "patch_size": 8, "num_frames": 4, "tubelet_size": 2, "embed_dim": 32, "depth": 1,
           "num_heads": 2}  # token grid 2 x 4 x 2
LM = {"lm_layers": 2, "lm_dim": 32, "lm_heads": 2, "lm_dropout": 0.0, "vocab_size": 300}
DATA = {"train_per_category": 2, "few_shot_train": 1, "eval_per_category": 1, "min_frames": 8, "max_frames": 12,
        "num_frames": 4, "image_size": (32, 16), "batch_size": 4, "num_workers": 0}


def tiny_encoder() -> VisionTransformer:
    return VisionTransformer(**ENCODER)


def decoder(**kwargs) -> IntentDecoder:
    return IntentDecoder(tiny_encoder(), **{**LM, **kwargs})


def with_tokenizer(model: IntentDecoder, corpus=INTENTS) -> IntentDecoder:
    model.set_tokenizer(train_intent_tokenizer(list(corpus) * 5, model.hparams.vocab_size))
    return model


def overfit(model: IntentDecoder, video: torch.Tensor, texts: list[str], steps: int, lr: float = 3e-3) -> list[float]:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model.loss(video, texts)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="module")
def ui_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ui_decoder_cache")


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory) -> Path:
    """A 'pretrained' tiny encoder as a safetensors file (a random one: the tests do not need a trained one)."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("encoder") / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_encoder().state_dict().items()}, str(path))
    return path


# ------------------------------------------------------------------------------------------ loss
def test_labels_ignore_video_bos_and_padding_and_loss_is_text_cross_entropy(one_thread):
    torch.manual_seed(0)
    model = with_tokenizer(decoder()).eval()  # no pooling: 2 x 4 x 2 = 16 video tokens
    assert model.num_video_tokens == 16
    pad, bos, eos = model.special_ids
    video = torch.randn(3, 3, 4, 32, 16)
    texts = ["open Maps", "search for headphones in Shopzy", "turn on wi-fi"]
    tokens = model.video_tokens(video)
    assert tokens.shape == (3, 16, 32)
    text_ids, lengths = model.tokenize(texts)
    assert lengths.tolist() == [len(model.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    embeds, mask, labels = model.build_inputs(tokens, text_ids, lengths)
    n_text = text_ids.size(1)
    assert embeds.shape == (3, 16 + n_text + 2, 32) and mask.shape == labels.shape == (3, 16 + n_text + 2)
    assert (labels[:, :16] == IGNORE).all()  # video tokens
    assert (labels[:, 16] == IGNORE).all()  # bos
    assert torch.equal(embeds[:, :16], tokens)  # the video tokens are the prefix, untouched
    assert torch.allclose(embeds[:, 16], model.lm.get_input_embeddings().weight[bos].expand(3, -1))
    for i, n in enumerate(lengths.tolist()):
        assert labels[i, 17:17 + n].tolist() == text_ids[i, :n].tolist()  # the text
        assert labels[i, 17 + n] == eos
        assert (labels[i, 18 + n:] == IGNORE).all() and (mask[i, 18 + n:] == 0).all()  # padding
        assert (mask[i, :18 + n] == 1).all()

    # the loss is the cross-entropy of the next-token predictions at the text + eos positions only
    logits = model.lm(inputs_embeds=embeds, attention_mask=mask).logits
    by_hand = [F.cross_entropy(logits[i, 16 + j], labels[i, 17 + j], reduction="sum")
               for i, n in enumerate(lengths.tolist()) for j in range(n + 1)]
    expected = torch.stack(by_hand).sum() / (lengths + 1).sum()
    loss = model.loss(video, texts)
    assert torch.allclose(loss, expected, atol=1e-5), (loss, expected)
    # the video tokens condition the text (they are in the context) but are not predicted
    assert not torch.allclose(model.loss(torch.randn_like(video), texts), loss)

    # more padding, or garbage in the padded positions, changes nothing
    wider = torch.cat([text_ids, torch.randint(3, 200, (3, 5))], dim=1)
    assert torch.allclose(model.text_loss(tokens, wider, lengths), loss, atol=1e-6)


def test_text_is_truncated_to_max_text_tokens(one_thread):
    model = with_tokenizer(decoder(max_text_tokens=4, max_new_tokens=5))
    text_ids, lengths = model.tokenize(["search for headphones in Shopzy and then some more words", "open Maps"])
    assert text_ids.size(1) == 4 and lengths.max() == 4
    _, _, labels = model.build_inputs(torch.zeros(2, model.num_video_tokens, 32), text_ids, lengths)
    assert ((labels != IGNORE).sum(1) == lengths + 1).all()  # text + eos
    with pytest.raises(ValueError, match="max_new_tokens=9 > max_text_tokens"):
        decoder(max_text_tokens=4, max_new_tokens=9)


def test_video_pool_and_errors():
    model = decoder(video_pool=(2, 1))
    assert model.num_video_tokens == 2 * 2 * 1
    assert model.video_tokens(torch.randn(2, 3, 4, 32, 16)).shape == (2, 4, 32)
    assert model.lm.config.n_positions == 4 + 32 + 2
    with pytest.raises(ValueError, match="video_pool"):
        decoder(video_pool=(5, 1))
    with pytest.raises(RuntimeError, match="no tokenizer"):
        decoder().generate(torch.randn(1, 3, 4, 32, 16))
    with pytest.raises(ValueError, match="embed_dim"):
        IntentDecoder(torch.nn.Linear(2, 2))


# ------------------------------------------------------------------------------------------ generation
def test_generation_reproduces_the_training_intents_after_a_short_overfit(one_thread):
    torch.manual_seed(0)
    model = with_tokenizer(decoder(video_pool=(2, 1)))
    video = torch.randn(4, 3, 4, 32, 16)
    before = model.eval().generate(video)
    assert len(before) == 4 and all(isinstance(t, str) for t in before)
    assert before != INTENTS
    losses = overfit(model, video, INTENTS, steps=100)
    assert losses[-1] < 0.1 * losses[0]
    model.eval()
    assert model.generate(video) == INTENTS  # greedy
    beams = model.generate(video, num_beams=3)
    assert all(beams) and sum(b == t for b, t in zip(beams, INTENTS)) >= 3
    assert model(video) == INTENTS  # forward = generate


def test_greedy_generation_equals_a_manual_greedy_loop(one_thread):
    """generate() (KV cache, inputs_embeds prefix) = argmax decoding by full forward passes over
    [video tokens][bos][tokens so far], the LM's own positions running over the whole sequence."""
    torch.manual_seed(3)
    model = with_tokenizer(decoder(video_pool=(2, 1), max_new_tokens=8)).eval()
    with torch.no_grad():  # a random LM with sharper logits than GPT-2's small init
        model.lm.get_input_embeddings().weight.mul_(20.0)
    video = torch.randn(3, 3, 4, 32, 16)
    pad, bos, eos = model.special_ids
    with torch.no_grad():
        embeds = torch.cat([model.video_tokens(video), model.lm.get_input_embeddings()(torch.full((3, 1), bos))], 1)
        out = []
        for _ in range(8):
            nxt = model.lm(inputs_embeds=embeds).logits[:, -1].argmax(-1)
            out.append(nxt)
            embeds = torch.cat([embeds, model.lm.get_input_embeddings()(nxt)[:, None]], 1)
    expected = torch.stack(out, 1)
    expected = expected.masked_fill((expected == eos).cumsum(1) > 0, pad)
    ids = model.generate_ids(video)
    assert (ids[:, 0] != pad).all() and (ids != pad).sum() >= 6  # not trivially empty
    assert torch.equal(ids, expected[:, :ids.size(1)]) and (expected[:, ids.size(1):] == pad).all()
    texts = model.generate(video)
    assert texts == [" ".join(t.split()) for t in model.tokenizer.batch_decode(ids.tolist(), skip_special_tokens=True)]


def test_bf16_autocast_keeps_the_loss_in_fp32(one_thread):
    model = with_tokenizer(decoder(video_pool=(2, 1)))
    video = torch.randn(2, 3, 4, 32, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.loss(video, INTENTS[:2])
        loss.backward()
        texts = model.eval().generate(video, num_beams=2)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert model.proj.weight.grad is not None and len(texts) == 2


# ------------------------------------------------------------------------------------------ tokenizer, checkpoints
def test_tokenizer_trained_on_the_datamodule_and_restored_from_the_checkpoint(ui_cache, encoder_file, tmp_path,
                                                                              one_thread):
    torch.manual_seed(0)
    dm = UIRecordingsDataModule(cache_dir=str(ui_cache), **DATA)
    model = IntentDecoder(tiny_encoder(), checkpoint=str(encoder_file), video_pool=(2, 1), **LM)
    file_weights = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    trainer = L.Trainer(accelerator="cpu", max_steps=6, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    # the tokenizer was trained on the training intents: they round-trip, with learned merges
    corpus = dm.intents_of("train")
    tok = model.tokenizer
    encoded = [tok(t, add_special_tokens=False)["input_ids"] for t in corpus]
    assert [tok.decode(ids) for ids in encoded] == corpus
    assert sum(map(len, encoded)) < 0.7 * sum(map(len, corpus))  # merges: fewer tokens than characters
    assert len(tok) == LM["vocab_size"]
    text = " ".join(corpus)
    assert all(tok.decode([i]) in text for i in range(259, len(tok)))  # every merge comes from the corpus
    # the encoder stayed frozen (its file's weights) and is not in the checkpoint; the tokenizer is
    assert all(torch.equal(v, file_weights[k]) for k, v in model.encoder.state_dict().items())
    ckpt = tmp_path / "decoder.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert not any(k.startswith("encoder.") for k in saved["state_dict"])
    assert any(k.startswith("proj.") for k in saved["state_dict"]) and isinstance(saved[TOKENIZER_KEY], str)

    restored = IntentDecoder.load_from_checkpoint(ckpt, encoder=tiny_encoder()).eval()
    assert restored.tokenizer.backend_tokenizer.to_str() == tok.backend_tokenizer.to_str()
    assert all(torch.equal(v, file_weights[k]) for k, v in restored.encoder.state_dict().items())
    dm.setup("validate")
    video = next(iter(dm.val_dataloader()))["video"]
    model.eval()
    assert restored.generate(video) == model.generate(video)
    assert restored.generate(video, num_beams=2) == model.generate(video, num_beams=2)


def test_fit_needs_a_datamodule_with_intents(one_thread):
    data = [{"video": torch.randn(3, 4, 32, 16), "intent": t} for t in INTENTS]
    dm = L.LightningDataModule.from_datasets(train_dataset=data, batch_size=2)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(TypeError, match="intents_of"):
        trainer.fit(decoder(), datamodule=dm)


# ------------------------------------------------------------------------------------------ pretrained LM + LoRA
def write_pretrained_lm(folder: Path) -> Path:
    """A tiny GPT-2 'pretrained' on the intents as plain text (so it knows the language, not which video shows
    which intent) and a tokenizer with only an eos token (no pad, no bos: both fall back to eos)."""
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    base = train_intent_tokenizer(INTENTS * 5, 300).backend_tokenizer
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=base, eos_token="<eos>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=300, n_positions=64, n_embd=32, n_layer=2, n_head=2, eos_token_id=2,
                        bos_token_id=2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    lm = GPT2LMHeadModel(config)
    rows = [torch.tensor([2, *tokenizer(t, add_special_tokens=False)["input_ids"], 2]) for t in INTENTS]
    ids = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=2)
    labels = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=IGNORE)
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-2)
    for _ in range(30):
        loss = lm(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    lm.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_pretrained_lm_with_lora_trains_adapters_and_projection_only(tmp_path, one_thread):
    folder = write_pretrained_lm(tmp_path / "tiny_gpt2")
    model = IntentDecoder(tiny_encoder(), lm=str(folder), video_pool=(2, 1), max_text_tokens=16,
                          max_new_tokens=12)
    assert model.lora and model.special_ids == (2, 2, 2)  # pad and bos fall back to eos
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"proj.weight", "proj.bias"} | {n for n in trainable if ".lora_" in n}
    assert len(trainable) == 2 + 2 * 2  # GPT-2's default LoRA target: c_attn in each of the 2 blocks
    counts = model.parameter_counts()
    assert counts["trainable"] == sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    assert counts["lm"] > counts["trainable"] - counts["projection"] > 0

    frozen = {n: p.detach().clone() for n, p in model.lm.named_parameters() if not p.requires_grad}
    data = [{"video": torch.randn(3, 4, 32, 16), "intent": t} for t in INTENTS]
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    trainer = L.Trainer(accelerator="cpu", max_steps=30, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    video = next(iter(loader))["video"]
    start = model.loss(video, INTENTS).item()
    model.hparams.lr = 1e-2
    trainer.fit(model, train_dataloaders=loader)
    assert trainer.callback_metrics["train/loss"] < 0.8 * start
    assert all(torch.equal(p, frozen[n]) for n, p in model.lm.named_parameters() if n in frozen)
    model.eval()
    greedy, beams = model.generate(video), model.generate(video, num_beams=2)
    assert len(greedy) == len(beams) == 4 and all(isinstance(t, str) for t in greedy + beams)

    # checkpoints keep the projection and the adapters only; the base LM comes back from the folder
    ckpt = tmp_path / "lora.ckpt"
    trainer.save_checkpoint(ckpt)
    keys = set(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"])
    assert keys == {f"{n}" for n in trainable}
    restored = IntentDecoder.load_from_checkpoint(ckpt, encoder=tiny_encoder()).eval()
    restored.encoder.load_state_dict(model.encoder.state_dict())  # the test encoder has no weights file
    assert restored.generate(video) == greedy and restored.generate(video, num_beams=2) == beams


def test_missing_lm_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_llm"):
        IntentDecoder(tiny_encoder(), lm=str(tmp_path / "no_such_llm"))


# ------------------------------------------------------------------------------------------ CLI and recipes
class _ParseOnly(JEPACLI):
    def instantiate_classes(self) -> None:  # validate the config against the typed signatures, build nothing
        pass


@pytest.mark.parametrize("recipe", ["decoder_tiny.yaml", "decoder_paper.yaml"])
def test_recipes_parse(recipe):
    cli = _ParseOnly(args=["--config", str(RECIPES / recipe)], run=False)
    model = cli.config["model"]
    assert model["class_path"] == "jepa_lightning.methods.ui_intent.IntentDecoder"
    assert model["init_args"]["lr"] == 3e-4 and model["init_args"]["weight_decay"] == 0.04
    assert model["init_args"]["final_weight_decay"] == 0.4
    if recipe == "decoder_paper.yaml":
        assert cli.config["trainer"]["precision"] == "bf16-mixed"
        assert (model["init_args"]["lora_rank"], model["init_args"]["lora_alpha"],
                model["init_args"]["lora_dropout"]) == (16, 16, 0.05)
        assert model["init_args"]["encoder"]["init_args"]["embed_dim"] == 1280


def test_paper_recipe_builds_on_meta_with_a_stand_in_phi3_folder(tmp_path, monkeypatch):
    """The paper pipeline without downloading anything: Phi-3-mini's config (no weights) + a stand-in tokenizer in
    the recipe's lm folder, built on the meta device (the config is enough there); LoRA on every linear layer
    (peft has no default targets for phi3)."""
    from transformers import Phi3Config

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "models" / "Phi-3-mini-4k-instruct"
    Phi3Config(vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
               num_attention_heads=32, max_position_embeddings=4096).save_pretrained(folder)
    train_intent_tokenizer(INTENTS, 300).save_pretrained(folder)
    (tmp_path / "data" / "iiw").mkdir(parents=True)
    with torch.device("meta"):
        cli = JEPACLI(args=["--config", str(RECIPES / "decoder_paper.yaml"), "--model.init_args.checkpoint=null",
                            "--trainer.accelerator=cpu", "--trainer.precision=32-true"], run=False)
    model = cli.model
    counts = model.parameter_counts()
    assert 600e6 < counts["encoder"] < 660e6  # ViT-H/16
    assert model.num_video_tokens == 8 * 4 * 4 and counts["projection"] == 1280 * 3072 + 3072
    assert 3.7e9 < counts["lm"] < 3.9e9  # Phi-3-mini + adapters
    lora = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n, p in model.lm.named_parameters() if p.requires_grad}
    assert lora == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
    assert counts["trainable"] - counts["projection"] == 32 * 16 * (3072 + 3 * 3072 + 3072 + 3072 + 3072
                                                                    + 2 * 8192 + 8192 + 3072)


def cli_args(subcommand: str, cache: Path, encoder: Path, *extra: str) -> list[str]:
    enc = "--model.init_args.encoder.init_args."
    return [subcommand, "--config", str(RECIPES / "decoder_tiny.yaml"),
            f"{enc}img_size=[32,16]", f"{enc}num_frames=4", f"{enc}embed_dim=32", f"{enc}depth=1",
            f"{enc}num_heads=2", f"--model.init_args.checkpoint={encoder}", "--model.init_args.video_pool=[2,1]",
            "--model.init_args.lm_layers=1", "--model.init_args.lm_dim=32", "--model.init_args.lm_heads=2",
            "--model.init_args.vocab_size=300", "--model.init_args.max_text_tokens=16",
            "--model.init_args.max_new_tokens=12", f"--data.init_args.cache_dir={cache}",
            *[f"--data.init_args.{k}={list(v) if isinstance(v, tuple) else v}" for k, v in DATA.items()],
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", *extra]


def test_cli_fit_validate_predict_on_the_tiny_recipe(ui_cache, encoder_file, tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)  # the recipe's runs/ (logs, checkpoints, predictions.csv) land here
    fit = JEPACLI(args=cli_args("fit", ui_cache, encoder_file, "--trainer.max_epochs=2",
                                "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"))
    assert torch.isfinite(fit.trainer.callback_metrics["train/loss"])
    assert 0.0 <= fit.trainer.callback_metrics["val/intent_similarity"] <= 1.0
    ckpt = tmp_path / "runs" / "ui_jepa_decoder_tiny" / "latest" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert TOKENIZER_KEY in saved and not any(k.startswith("encoder.") for k in saved["state_dict"])

    val = JEPACLI(args=cli_args("validate", ui_cache, encoder_file, f"--ckpt_path={ckpt}"))
    metrics = val.trainer.callback_metrics
    assert {"val/loss", "val/intent_similarity", "val/cosine", "val/rouge1", "val/rouge2", "val/rougeL"} <= set(metrics)
    parts = torch.stack([metrics[f"val/{k}"] for k in ("cosine", "rouge1", "rouge2", "rougeL")])
    assert torch.allclose(metrics["val/intent_similarity"], parts.mean())

    pred = JEPACLI(args=cli_args("predict", ui_cache, encoder_file, f"--ckpt_path={ckpt}"))
    writer = next(c for c in pred.trainer.callbacks if isinstance(c, IntentPredictionWriter))
    out = pred.run_dir.resolve() / "predictions.csv"  # in the predict run's own folder
    assert writer.written == str(out) and out.parent.parent == tmp_path / "runs" / "ui_jepa_decoder_tiny"
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    zero_shot = read_ui_annotations(str(Path(pred.datamodule.root) / "zero_shot" / "annotations.csv"))
    assert sorted(r["path"] for r in rows) == sorted(p for p, _, _ in zero_shot)
    truth = {p: (intent, category) for p, intent, category in zero_shot}
    for r in rows:
        assert (r["reference"], r["category_name"]) == truth[r["path"]]
        assert pred.datamodule.category_names[int(r["category"])] == r["category_name"]
        scores = [float(r[k]) for k in ("intent_similarity", "cosine", "rouge1", "rouge2", "rougeL")]
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert abs(scores[0] - sum(scores[1:]) / 4) < 1e-5
    # the predictions come from the restored tokenizer and weights: the same as generating with the checkpoint
    restored = IntentDecoder.load_from_checkpoint(ckpt, encoder=VisionTransformer(**ENCODER)).eval()
    batch = next(iter(pred.datamodule.predict_dataloader()))
    expected = dict(zip(batch["path"], restored.generate(batch["video"])))
    assert all(r["prediction"] == expected[r["path"]] for r in rows if r["path"] in expected)
