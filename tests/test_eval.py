"""Frozen evaluation: attentive pooler, RankMe, kNN, online probe, checkpoint I/O, attentive probe."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from jepa_lightning.eval import (
    AttentiveProbe,
    OnlineProbe,
    RankMe,
    export_encoder,
    knn_accuracy,
    knn_predict,
    load_encoder_weights,
    variance_shares,
)
from jepa_lightning.nn import AttentivePooler, VisionTransformer

pytestmark = pytest.mark.usefixtures("one_thread")


def _trainer(**kwargs) -> L.Trainer:
    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
    return L.Trainer(**{**defaults, **kwargs})


class _DictDataset(Dataset):
    def __init__(self, **tensors: torch.Tensor) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


# ------------------------------------------------------------------------------------------------ pooler
def test_pooler_shapes_and_errors():
    pooler = AttentivePooler(32, num_queries=3, num_heads=4, depth=2)
    assert pooler(torch.randn(5, 10, 32)).shape == (5, 3, 32)
    assert AttentivePooler(32, num_heads=4)(torch.randn(2, 7, 32)).shape == (2, 1, 32)
    with pytest.raises(ValueError, match=r"\[B, N, 32\]"):
        pooler(torch.randn(5, 10, 16))
    with pytest.raises(ValueError, match="depth"):
        AttentivePooler(32, num_heads=4, depth=0)
    with pytest.raises(ValueError, match="divisible"):
        AttentivePooler(30, num_heads=4)


@pytest.mark.parametrize("depth", [1, 2])
def test_pooler_is_permutation_invariant_over_tokens(depth):
    torch.manual_seed(0)
    pooler = AttentivePooler(32, num_queries=2, num_heads=4, depth=depth).eval()
    x = torch.randn(3, 9, 32)
    out = pooler(x)
    torch.testing.assert_close(pooler(x[:, torch.randperm(9)]), out, atol=1e-5, rtol=1e-5)
    # ... but it does read the tokens: other tokens, other output; each sample pooled on its own
    assert (pooler(torch.randn(3, 9, 32)) - out).abs().max() > 1e-3
    torch.testing.assert_close(pooler(x[1:2]), out[1:2], atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------ RankMe
def _rankme(z: torch.Tensor, **kwargs) -> float:
    metric = RankMe(**kwargs)
    metric.update(z)
    return metric.compute().item()


@pytest.mark.parametrize("rank", [1, 4, 16])
def test_rankme_of_known_rank(rank):
    g = torch.Generator().manual_seed(rank)
    z = torch.randn(2048, rank, generator=g) @ torch.randn(rank, 128, generator=g)
    value = _rankme(z)
    assert rank - 0.05 * rank - 0.05 < value <= rank + 0.01


def test_rankme_isotropic_and_constant():
    g = torch.Generator().manual_seed(0)
    assert _rankme(torch.randn(2048, 32, generator=g)) > 31.0
    assert _rankme(torch.full((256, 32), 3.0)) == pytest.approx(1.0, abs=1e-3)
    assert _rankme(torch.zeros(256, 32)) == pytest.approx(1.0, abs=1e-3)  # no NaN on collapse to zero


def test_rankme_is_read_on_centred_embeddings():
    """An isotropic cloud far from the origin: uncentred, its mean direction dominates (rank ~1, a false
    'collapse'); centred (the default) it reads the cloud's full rank."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2048, 32, generator=g) + 50.0 * torch.randn(32, generator=g)
    assert _rankme(z) > 31.0
    assert _rankme(z, center=False) < 3.0
    assert _rankme(z) == pytest.approx(_rankme(z - z.mean(0), center=False), rel=1e-5)


def test_variance_shares_split_position_sample_and_local():
    """Token maps built from a position table, a per-sample code and per-token noise with known variances: the
    shares read them back (an exact two-way decomposition: they sum to 1), and the pure cases read 1."""
    g = torch.Generator().manual_seed(0)
    n, N, D = 400, 64, 16
    position = torch.randn(1, N, D, generator=g)
    sample = 2.0 * torch.randn(n, 1, D, generator=g)
    local = torch.randn(n, N, D, generator=g)
    shares = variance_shares(position + sample + local + 5.0)
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-9)
    assert shares["position"] == pytest.approx(1 / 6, abs=0.03)
    assert shares["sample"] == pytest.approx(4 / 6, abs=0.05)
    assert shares["local"] == pytest.approx(1 / 6, abs=0.03)
    assert variance_shares(position.expand(n, N, D))["position"] == pytest.approx(1.0)
    assert variance_shares(sample.expand(n, N, D))["sample"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"tokens \[n, N, D\]"):
        variance_shares(local.flatten(0, 1))


def test_rankme_accumulates_and_keeps_only_the_most_recent_rows():
    g = torch.Generator().manual_seed(0)
    iso = torch.randn(512, 16, generator=g)
    metric = RankMe(max_samples=1024)
    for part in iso.chunk(4):
        metric.update(part)
    assert metric.compute().item() == pytest.approx(_rankme(iso), rel=1e-5)
    # the cap drops the oldest rows: isotropic rows followed by `max_samples` collapsed rows -> rank ~1
    capped = RankMe(max_samples=300)
    capped.update(torch.randn(200, 16, generator=g))
    capped.update(torch.randn(200, 16, generator=g))
    capped.update(torch.ones(300, 16))
    assert sum(e.size(0) for e in capped.embeddings) == 300
    assert capped.compute().item() == pytest.approx(1.0, abs=1e-3)
    capped.reset()
    capped.update(torch.randn(100, 16, generator=g))
    capped.update(torch.ones(250, 16))  # 50 isotropic rows stay in the window
    assert capped.compute().item() > 5.0
    with pytest.raises(ValueError, match="max_samples"):
        RankMe(max_samples=0)


def test_rankme_gathers_rows_from_all_processes():
    """The DDP path (`cat` sync), with torchmetrics' gather replaced by one that adds a second 'process'."""
    g = torch.Generator().manual_seed(0)
    mine = torch.randn(512, 4, generator=g) @ torch.randn(4, 64, generator=g)
    theirs = torch.randn(512, 4, generator=g) @ torch.randn(4, 64, generator=g)
    metric = RankMe(dist_sync_fn=lambda tensor, group=None: [tensor, theirs],
                    distributed_available_fn=lambda: True)
    metric.update(mine[:256])
    metric.update(mine[256:])
    assert metric.compute().item() == pytest.approx(_rankme(torch.cat([mine, theirs])), rel=1e-4)
    assert metric.compute().item() > 7.5  # two 4-d subspaces
    metric.update(mine)  # the local state is restored after the sync
    assert sum(e.size(0) for e in metric.embeddings) == 1024


# ------------------------------------------------------------------------------------------------ kNN
def _blobs(n: int, num_classes: int, dim: int, spread: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=g) * 4
    labels = torch.randint(0, num_classes, (n,), generator=g)
    return centers[labels] + spread * torch.randn(n, dim, generator=g), labels


def test_knn_separable_clusters_and_random_labels():
    x, y = _blobs(1200, 5, 16, 0.5, seed=0)
    assert knn_accuracy(x[:1000], y[:1000], x[1000:], y[1000:], k=20, chunk=64) > 0.98
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3000, 16, generator=g)
    labels = torch.randint(0, 5, (3000,), generator=g)
    acc = knn_accuracy(z[:2000], labels[:2000], z[2000:], labels[2000:], k=20)
    assert abs(acc - 0.2) < 0.06


def test_knn_small_case_by_hand():
    # train: a=(1,0) class 0, b=(0,1) class 1, c=(1,1) class 1; query q=(1,0.2), true class 0.
    # cos(q,a)=0.981, cos(q,b)=0.196, cos(q,c)=0.832.
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    q, y = torch.tensor([[1.0, 0.2]]), torch.tensor([0])
    # (uncentred: the cosines above are of the raw vectors)
    # k=1: nearest is a -> class 0
    assert knn_accuracy(train, labels, q, y, k=1, temperature=1.0, center=False) == 1.0
    # k=3, T=1: class 0 gets e^0.981 = 2.67, class 1 gets e^0.196 + e^0.832 = 3.51 -> class 1
    assert knn_accuracy(train, labels, q, y, k=3, temperature=1.0, center=False) == 0.0
    # k=3, T=0.07: e^(0.981/0.07) = 1.2e6 outweighs e^(0.832/0.07) + e^(0.196/0.07) = 1.5e5 -> class 0
    assert knn_accuracy(train, labels, q, y, k=3, temperature=0.07, center=False) == 1.0
    # k larger than the bank is clipped; features are compared by angle only
    assert knn_accuracy(train * 5, labels, q * 0.1, y, k=50, temperature=0.07, center=False) == 1.0


def test_knn_centres_on_the_training_mean():
    """Centred kNN (the default) = cosine kNN after subtracting the training rows' mean from both sides, so it
    is blind to a common offset (the mean direction pooled LayerNorm'd tokens share); uncentred kNN is not."""
    x, y = _blobs(1200, 5, 16, 3.0, seed=3)
    offset = torch.full((16,), 20.0)
    base = knn_predict(x[:1000], y[:1000], x[1000:], k=20)
    torch.testing.assert_close(knn_predict(x[:1000] + offset, y[:1000], x[1000:] + offset, k=20), base)
    mean = x[:1000].mean(0)
    torch.testing.assert_close(knn_predict(x[:1000] - mean, y[:1000], x[1000:] - mean, k=20, center=False), base)
    raw = knn_predict(x[:1000] + offset, y[:1000], x[1000:] + offset, k=20, center=False)
    assert (raw != base).any()


def test_knn_chunking_does_not_change_the_answer_and_errors():
    x, y = _blobs(600, 4, 8, 3.0, seed=2)
    full = knn_accuracy(x[:400], y[:400], x[400:], y[400:], k=10)
    assert knn_accuracy(x[:400], y[:400], x[400:], y[400:], k=10, chunk=7) == full
    with pytest.raises(ValueError, match="features"):
        knn_accuracy(x[:400], y[:400], x[400:, :4], y[400:])
    with pytest.raises(ValueError, match="test_labels"):
        knn_accuracy(x[:400], y[:400], x[400:], y[:10])


# ------------------------------------------------------------------------------------------------ online probe
class _BlobMethod(L.LightningModule):
    """A stand-in JEPA method: its 'encoder' is a fixed random projection of class-dependent Gaussian tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1))
        self.register_buffer("proj", torch.randn(8, 24, generator=torch.Generator().manual_seed(0)))

    def encode(self, batch):
        return batch["x"] @ self.proj  # [B, 4, 24]

    def training_step(self, batch, batch_idx):
        with torch.no_grad():
            features = self.encode(batch).mean(1)
        return {"loss": (self.p * 0).sum(), "features": features}

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _blob_loaders(num_classes: int = 4):
    g = torch.Generator().manual_seed(3)
    centers = torch.randn(num_classes, 8, generator=g) * 1.5
    labels = torch.randint(0, num_classes, (768,), generator=g)
    x = centers[labels, None, :] + torch.randn(768, 4, 8, generator=g)
    train = DataLoader(_DictDataset(x=x[:512], label=labels[:512]), batch_size=64, shuffle=True)
    val = DataLoader(_DictDataset(x=x[512:], label=labels[512:]), batch_size=64)
    return train, val


def test_online_probe_trains_and_survives_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    train, val = _blob_loaders()
    probe = OnlineProbe(num_classes=4, lr=1e-2, knn_k=10, knn_bank_size=256)
    trainer = _trainer(max_epochs=4, callbacks=[probe])  # the sanity check validates an untrained probe first
    trainer.fit(_BlobMethod(), train, val)
    metrics = trainer.callback_metrics
    assert metrics["val/probe_acc"].item() > 0.9
    assert metrics["val/knn_acc"].item() > 0.9
    assert metrics["train/probe_acc"].item() > 0.8 and metrics["train/probe_loss"].item() < 0.7
    assert 1.0 < metrics["val/rankme"].item() <= 24.0
    assert probe._bank_filled == 256  # FIFO bank capped at knn_bank_size
    ckpt = tmp_path / "method.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["callbacks"][probe.state_key]
    assert set(saved) == {"in_features", "head", "optimizer"}  # no kNN bank in the checkpoint

    fresh = OnlineProbe(num_classes=4, lr=1e-2, knn_k=10, knn_bank_size=256)
    validator = _trainer(callbacks=[fresh])
    validator.validate(_BlobMethod(), val, ckpt_path=ckpt, verbose=False)
    assert validator.callback_metrics["val/probe_acc"].item() == pytest.approx(metrics["val/probe_acc"].item())
    assert "val/knn_acc" not in validator.callback_metrics  # empty bank: kNN skipped
    for (name, a), b in zip(probe.head.state_dict().items(), fresh.head.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert fresh.optimizer.state_dict()["state"][0]["step"] == probe.optimizer.state_dict()["state"][0]["step"]


class _LossOnlyMethod(_BlobMethod):
    def training_step(self, batch, batch_idx):
        return (self.p * 0).sum()  # no "features": the probe encodes the batch itself


def test_online_probe_falls_back_to_encode_and_names_a_missing_label_key():
    train, val = _blob_loaders()
    probe = OnlineProbe(num_classes=4, lr=1e-2, knn_bank_size=100)
    method = _LossOnlyMethod()
    # `validate` first builds the head under torch.inference_mode; it must still train afterwards
    _trainer(callbacks=[probe]).validate(method, val, verbose=False)
    trainer = _trainer(max_epochs=1, num_sanity_val_steps=0, callbacks=[probe])
    trainer.fit(method, train, val)
    assert probe.head[1].in_features == 24 and probe._bank_filled == 100
    assert trainer.callback_metrics["val/probe_acc"].item() > 0.5
    batch = {"x": torch.randn(6, 4, 8), "label": torch.tensor([0, 1, 2, 0, 1, 2])}
    with pytest.raises(KeyError, match=r"'target'.*\['label', 'x'\]"):
        OnlineProbe(num_classes=3, label_key="target").on_train_batch_end(trainer, trainer.lightning_module, {},
                                                                           batch, 0)


class _SomeBatchesUnreadable(_BlobMethod):
    """Every third training batch arrives as None, as a batch whose every file was unreadable does."""

    def on_before_batch_transfer(self, batch, dataloader_idx):
        if self.trainer.training and self.trainer.fit_loop.epoch_loop.batch_progress.total.ready % 3 == 1:
            return None
        return batch


def test_online_probe_skips_batches_with_no_readable_sample():
    train, val = _blob_loaders()
    probe = OnlineProbe(num_classes=4, lr=1e-2, knn_bank_size=64)
    trainer = _trainer(max_epochs=2, num_sanity_val_steps=0, callbacks=[probe])
    trainer.fit(_SomeBatchesUnreadable(), train, val)  # Lightning skips the step, the probe must too
    batches = 2 * len(train)
    assert trainer.global_step == batches - len(range(1, batches, 3))
    assert trainer.callback_metrics["val/probe_acc"].item() > 0.5


def test_online_probe_averages_head_gradients_and_statistics_across_processes(monkeypatch):
    """Two emulated processes: every process adds its (gradients, running stats) to one flat all-reduce."""
    import jepa_lightning.eval.online_probe as online_probe

    head = nn.Sequential(nn.BatchNorm1d(6, affine=False), nn.Linear(6, 3))
    head(torch.randn(8, 6)).sum().backward()
    other = [torch.randn_like(p.grad) for p in head.parameters()] + [torch.rand(6), torch.rand(6)]
    mine = [p.grad.clone() for p in head.parameters()] + [head[0].running_mean.clone(), head[0].running_var.clone()]
    calls = []

    def all_reduce(flat):
        calls.append(flat.numel())
        flat += torch.cat([t.reshape(-1) for t in other])

    monkeypatch.setattr(online_probe.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(online_probe.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(online_probe.dist, "all_reduce", all_reduce)
    OnlineProbe._sync_head(head)
    assert calls == [6 * 3 + 3 + 6 + 6]
    synced = [p.grad for p in head.parameters()] + [head[0].running_mean, head[0].running_var]
    for got, a, b in zip(synced, mine, other):
        torch.testing.assert_close(got, (a + b) / 2)


# ------------------------------------------------------------------------------------------------ checkpoints
class _TwoEncoders(L.LightningModule):
    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encoder = VisionTransformer(img_size=16, patch_size=4, embed_dim=width, depth=1, num_heads=4)
        self.teacher = VisionTransformer(img_size=16, patch_size=4, embed_dim=width, depth=1, num_heads=4)

    def training_step(self, batch, batch_idx):
        return self.encoder(batch["image"]).pow(2).mean() + 0 * sum(p.sum() for p in self.teacher.parameters())

    def configure_optimizers(self):
        return torch.optim.SGD(self.encoder.parameters(), lr=0.1)


def _tiny_vit() -> VisionTransformer:
    return VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=4)


@pytest.fixture(scope="module")
def method_ckpt(tmp_path_factory):
    """A real Lightning checkpoint holding `encoder.` and `teacher.` weights."""
    torch.manual_seed(0)
    method = _TwoEncoders()
    images = DataLoader(_DictDataset(image=torch.randn(4, 3, 16, 16)), batch_size=4)
    trainer = _trainer(max_steps=1)
    trainer.fit(method, images)
    path = tmp_path_factory.mktemp("ckpt") / "method.ckpt"
    trainer.save_checkpoint(path)
    return path, method


def test_load_encoder_weights_round_trip(method_ckpt, tmp_path):
    path, method = method_ckpt
    for key in ("teacher", "encoder"):
        vit = load_encoder_weights(_tiny_vit(), path, key=key)
        for (name, a), b in zip(getattr(method, key).state_dict().items(), vit.state_dict().values()):
            torch.testing.assert_close(a, b, msg=f"{key}.{name}")
    assert not torch.equal(method.teacher.patch_embed.proj.weight, method.encoder.patch_embed.proj.weight)

    out = export_encoder(path, tmp_path / "export" / "teacher.safetensors", key="teacher")
    vit = load_encoder_weights(_tiny_vit(), out)
    x = torch.randn(2, 3, 16, 16)
    method.teacher.eval()
    torch.testing.assert_close(vit.eval()(x), method.teacher(x))


def test_load_encoder_weights_errors(method_ckpt, tmp_path):
    path, _ = method_ckpt
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        load_encoder_weights(_tiny_vit(), tmp_path / "nope.ckpt")
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        export_encoder(tmp_path / "nope.safetensors", tmp_path / "out.safetensors")
    with pytest.raises(KeyError, match=r"'target\.'.*method\.ckpt.*\['encoder\.', 'teacher\.'\]"):
        load_encoder_weights(_tiny_vit(), path, key="target")
    wider = VisionTransformer(img_size=16, patch_size=4, embed_dim=64, depth=1, num_heads=4)
    with pytest.raises(RuntimeError, match=r"'teacher\.' weights in .*method\.ckpt"):
        load_encoder_weights(wider, path)
    deeper = VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4)
    with pytest.raises(RuntimeError, match="Missing key"):  # strict
        load_encoder_weights(deeper, path)


# ------------------------------------------------------------------------------------------------ attentive probe
def _quadrant_images(n: int, seed: int):
    """Class c in 0..3: quadrant c of the image is bright, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = 0.5 * torch.randn(n, 3, 16, 16, generator=g)
    for c in range(4):
        r, col = divmod(c, 2)
        images[labels == c, :, 8 * r:8 * r + 8, 8 * col:8 * col + 8] += 1.5
    return images, labels


@pytest.mark.filterwarnings(r"ignore:Found \d+ module\(s\) in eval mode")  # the frozen encoder, on purpose
def test_attentive_probe_learns_on_a_frozen_encoder(method_ckpt, tmp_path):
    path, method = method_ckpt
    torch.manual_seed(0)
    probe = AttentiveProbe(_tiny_vit(), checkpoint=str(path), num_classes=4, num_heads=4, lr=5e-3,
                           weight_decay=0.01, warmup=0.1)
    frozen = {k: v.clone() for k, v in probe.encoder.state_dict().items()}
    for k, v in method.teacher.state_dict().items():
        torch.testing.assert_close(frozen[k], v)  # loaded from the `teacher.` weights
    probe.train()
    assert probe.pooler.training and not probe.encoder.training

    x, y = _quadrant_images(384, seed=0)
    train = DataLoader(_DictDataset(image=x[:256], label=y[:256]), batch_size=16, shuffle=True)
    val = DataLoader(_DictDataset(image=x[256:], label=y[256:]), batch_size=64)
    # mean pooling sees the same brightness for every class: the queries must learn where to look
    trainer = _trainer(max_epochs=12, num_sanity_val_steps=0)
    trainer.fit(probe, train, val)
    assert trainer.callback_metrics["val/acc"].item() > 0.6  # chance: 0.25
    assert "train/loss" in trainer.callback_metrics and "val/loss" in trainer.callback_metrics

    for k, v in probe.encoder.state_dict().items():
        torch.testing.assert_close(v, frozen[k], rtol=0, atol=0, msg=k)
    opt_params = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert not opt_params & {id(p) for p in probe.encoder.parameters()}
    assert opt_params == {id(p) for n, p in probe.named_parameters() if not n.startswith("encoder.")}
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-8)  # cosine to final_lr

    ckpt = tmp_path / "probe.ckpt"
    trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert state and not [k for k in state if k.startswith("encoder.")]
    restored = AttentiveProbe.load_from_checkpoint(ckpt, encoder=_tiny_vit())  # strict; encoder from `checkpoint`
    validator = _trainer()
    validator.validate(restored, val, verbose=False)
    assert validator.callback_metrics["val/acc"].item() == pytest.approx(trainer.callback_metrics["val/acc"].item())


def test_attentive_probe_averages_logits_over_views():
    torch.manual_seed(0)
    probe = AttentiveProbe(_tiny_vit(), num_classes=4, num_heads=4).eval()
    a, b = torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16)
    labels = torch.tensor([0, 1, 2])
    logits, _ = probe.view_logits({"image": [a, b], "label": labels})
    assert logits.shape == (2, 3, 4)
    torch.testing.assert_close(logits, torch.stack([probe(a), probe(b)]), atol=1e-5, rtol=1e-5)
    stacked, _ = probe.view_logits({"image": torch.stack([a, b], dim=1), "label": labels})  # [B, V, 3, H, W]
    torch.testing.assert_close(stacked, logits, atol=1e-5, rtol=1e-5)
    single, _ = probe.view_logits({"image": a, "label": labels})
    assert single.shape == (1, 3, 4)

    logged = {}
    probe.log = lambda name, value, **kw: logged.__setitem__(name, value)
    probe._eval_step({"image": [a, b], "label": labels}, "val", probe.val_acc)
    expected = torch.nn.functional.cross_entropy((probe(a) + probe(b)) / 2, labels)
    torch.testing.assert_close(logged["val/loss"], expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(KeyError, match=r"'label'.*\['image'\]"):
        probe.view_logits({"image": a})
    logged.clear()
    probe.validation_step(None, 0)  # every file of the batch unreadable: Lightning's eval loops pass None on
    probe.test_step(None, 0)
    assert logged == {} and probe.val_acc.update_count == 1


def test_balanced_subset_draws_every_class_equally():
    from jepa_lightning.eval.segmentation import balanced_subset
    labels = torch.cat([torch.zeros(900), torch.ones(60), torch.full((40,), 3.0)]).long()  # 90 % background
    idx = balanced_subset(labels, 120, torch.Generator().manual_seed(0))
    counts = torch.bincount(labels[idx], minlength=4)
    assert counts.tolist() == [40, 40, 0, 40] and idx.unique().numel() == idx.numel()
    rare = balanced_subset(labels, 600, torch.Generator().manual_seed(0))      # 200 per class: all of the rare ones
    assert torch.bincount(labels[rare], minlength=4).tolist() == [200, 60, 0, 40]


def test_probe_checkpoint_with_a_missing_or_unexpected_key_fails_naming_it(tmp_path):
    """The frozen evaluation loads its encoder strictly: a key too few or too many is named, with the file."""
    from jepa_lightning.eval import load_encoder_weights
    from jepa_lightning.nn import VisionTransformer

    encoder = VisionTransformer(img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2)
    state = {f"teacher.{k}": v for k, v in encoder.state_dict().items()}
    missing = dict(state)
    del missing["teacher.transformer.norm.weight"]
    torch.save({"state_dict": missing}, tmp_path / "missing.ckpt")
    with pytest.raises(RuntimeError, match=r"missing.ckpt(.|\n)*Missing key\(s\)(.|\n)*transformer.norm.weight"):
        load_encoder_weights(VisionTransformer(img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2),
                             tmp_path / "missing.ckpt")
    extra = {**state, "teacher.head.weight": torch.zeros(2, 2)}
    torch.save({"state_dict": extra}, tmp_path / "extra.ckpt")
    with pytest.raises(RuntimeError, match=r"extra.ckpt(.|\n)*Unexpected key\(s\)(.|\n)*head.weight"):
        load_encoder_weights(VisionTransformer(img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2),
                             tmp_path / "extra.ckpt")
