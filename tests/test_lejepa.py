"""LeJEPA: multi-crop views, a ViT that takes the smaller local views, the objective (the global views' centre
predicted from every view, plus lambda x SIGReg, no teacher), ViT and ResNet backbones, a short fit that lowers both
terms without collapsing, and clear errors."""

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from PIL import Image

from datamodules import ImageFolderDataModule, MultiCrop, ObjectScenesDataModule
from jepa_lightning.methods import LeJEPA
from jepa_lightning.nn import Projector, SmallResNet, VisionTransformer


def vit(**kw):
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, **kw)


def lejepa(encoder=None, dim=32, **kw):
    torch.manual_seed(0)
    return LeJEPA(encoder or vit(), Projector(dim, hidden=64, out_dim=16), sigreg_slices=64, **kw)


def views(b=4, vg=2, vl=3):
    g = torch.Generator().manual_seed(1)
    return {"image": torch.randn(b, 3, 32, 32, generator=g), "global": torch.randn(b, vg, 3, 32, 32, generator=g),
            "local": torch.randn(b, vl, 3, 16, 16, generator=g)}


def test_multicrop_makes_global_and_local_views_in_range():
    torch.manual_seed(0)
    out = MultiCrop(global_size=32, local_size=16, num_global=2, num_local=5, blur_kernel=5)(torch.rand(3, 48, 40))
    assert out["global"].shape == (2, 3, 32, 32) and out["local"].shape == (5, 3, 16, 16)
    assert all(0 <= v.min() and v.max() <= 1 for v in out.values())
    assert not torch.equal(out["global"][0], out["global"][1])  # each view its own draw
    assert "local" not in MultiCrop(32, 16, num_local=0, blur_kernel=5)(torch.rand(3, 32, 32))


@pytest.mark.parametrize("kwargs, message", [({"num_global": 0}, "num_global must be an integer >= 1"),
                                             ({"local_scale": (0.5, 0.2)}, "local_scale must be"),
                                             ({"jitter": 1.5}, "jitter is a probability"),
                                             ({"blur_kernel": 4}, "blur_kernel must be an odd")])
def test_multicrop_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiCrop(**kwargs)


def test_vit_takes_smaller_views_with_resized_positions():
    model = vit().eval()
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 4, 32)  # a 2x2 grid of 8-px patches
    table = model.pos_embed.reshape(1, 4, 4, 32)
    # the resized table at the model's own grid is the table itself: same-size inputs are unchanged
    assert torch.allclose(model.resized_pos_embed((32, 32)), model.pos_embed, atol=1e-5)
    assert table.abs().sum() > 0
    with pytest.raises(ValueError, match="sides divisible by 8"):
        model(torch.randn(2, 3, 20, 20))
    with pytest.raises(ValueError, match="only a 2-D ViT with a position table"):
        vit(pos_embed="rope")(torch.randn(2, 3, 16, 16))


def test_objective_predicts_the_global_centre_and_adds_lambda_sigreg():
    model = lejepa(lamb=0.1)
    model.log = lambda *a, **k: None
    batch = views()
    out = model.objective(batch)
    e = torch.cat([model.embed(batch["global"]), model.embed(batch["local"])])    # [5, 4, 32]
    z = model.projector(e.flatten(0, 1)).view(5, 4, -1)
    expected = 0.9 * (z[:2].mean(0) - z).square().mean()
    assert torch.allclose(out.loss, expected, atol=1e-6) and out.embeddings.shape == (5, 4, 16)
    assert model.teacher is None and not hasattr(model, "predictor")
    total = out.loss + 0.1 * model.sigreg_term(out.embeddings)                    # what training_step adds
    total.backward()
    assert all(p.grad is not None for p in model.encoder.parameters() if p.requires_grad)
    assert all(p.grad is not None for p in model.projector.parameters())


def test_resnet_backbone_and_frozen_encoding():
    model = lejepa(SmallResNet(widths=(8, 16), depths=(1, 1)), dim=16)
    model.log = lambda *a, **k: None
    out = model.objective(views())
    assert out.embeddings.shape == (5, 4, 16) and torch.isfinite(out.loss)
    assert model.encode({"image": torch.randn(3, 3, 32, 32)}).shape == (3, 1, 16)  # ResNet: one token


def test_errors_are_named():
    with pytest.raises(ValueError, match=r"lamb .* must be in \(0, 1\)"):
        lejepa(lamb=0.0)
    with pytest.raises(ValueError, match="LeJEPA sets ema itself"):
        lejepa(ema=(0.99, 1.0))
    with pytest.raises(ValueError, match="LeJEPA sets sigreg_projector itself"):
        lejepa(sigreg_projector=Projector(32, hidden=8, out_dim=4))
    with pytest.raises(KeyError, match="no 'global' key"):
        lejepa().objective({"image": torch.randn(2, 3, 32, 32)})


def test_short_fit_lowers_both_terms_without_collapse(tmp_path):
    data = ObjectScenesDataModule(image_size=32, num_train=512, num_val=64, batch_size=32, cache_dir=str(tmp_path),
                                  views=MultiCrop(global_size=32, local_size=16, num_local=2, blur_kernel=5))
    model = lejepa(lamb=0.05, lr=1e-3, start_lr=1e-3, warmup=0.0)
    seen = []

    class Terms(Callback):  # the logged terms and the backbone's embedding spread after each step
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            m = trainer.callback_metrics
            seen.append((float(m["train/prediction"]), float(m["train/sigreg"]), outputs["features"].std(0).mean()))

    trainer = Trainer(max_steps=48, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                      callbacks=[Terms()], default_root_dir=tmp_path)
    trainer.fit(model, datamodule=data)
    first, last = seen[:8], seen[-8:]
    mean = lambda rows, i: sum(r[i] for r in rows) / len(rows)  # noqa: E731
    assert mean(last, 1) < 0.7 * mean(first, 1)  # SIGReg falls: the projections spread towards N(0, I)
    assert mean(last, 2) > 0.05  # the backbone's embeddings did not collapse to one point
    assert all(torch.isfinite(torch.tensor(r[:2])).all() for r in seen)


def test_image_folder_adds_views(tmp_path):
    for split in ("train", "val"):
        for c, value in (("a", 30), ("b", 220)):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (40, 36), (value, i * 50, 90)).save(tmp_path / split / c / f"{i}.png")
    dm = ImageFolderDataModule(str(tmp_path), image_size=32, batch_size=2,
                               views=MultiCrop(global_size=32, local_size=16, num_local=3, blur_kernel=5))
    dm.setup("fit")
    sample = dm.train_dataset[0]
    assert sample["image"].shape == (3, 32, 32) and sample["global"].shape == (2, 3, 32, 32)
    assert sample["local"].shape == (3, 3, 16, 16)
    assert "global" not in dm.val_dataset[0]
