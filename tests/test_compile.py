"""`compile` (torch.compile block by block): the masks' changing token counts do not recompile every step, the
compiled run trains like the eager one, parameter names do not change, and a bad value is named. The graphs are
captured by Dynamo whatever the backend; `aot_eager` keeps the test fast (Inductor's C++ build takes a minute on
2 cores; `benchmarks/memory.py --compile` times it)."""

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from torch._dynamo.utils import counters

from datamodules import DigitsDataModule
from jepa_lightning.masks import MultiBlockMask2D
from jepa_lightning.methods import IJEPA
from jepa_lightning.nn import TransformerPredictor, VisionTransformer


class Graphs(Callback):
    """The number of graphs Dynamo has compiled so far, after each step, and the context sizes seen."""

    def __init__(self):
        self.after_step, self.context_sizes = [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.context_sizes.append(batch["masks"].context.size(1))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.after_step.append(int(counters["stats"]["unique_graphs"]))


def ijepa(**kwargs) -> IJEPA:  # 8x8 patches: the context's token count changes from step to step
    enc = VisionTransformer(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=4)
    pred = TransformerPredictor(grid_size=(8, 8), embed_dim=32, predictor_dim=16, depth=1, num_heads=4)
    return IJEPA(enc, pred, masks=MultiBlockMask2D(min_keep=4), **kwargs)


def fit(tmp_path, compile):
    torch.manual_seed(0)
    model, graphs = ijepa(compile=compile), Graphs()
    trainer = Trainer(max_steps=10, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                      callbacks=[graphs], default_root_dir=tmp_path)
    trainer.fit(model, datamodule=DigitsDataModule(image_size=32, batch_size=16))
    return model, graphs


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def test_compiled_blocks_train_like_eager_without_recompiling_every_step(tmp_path, fresh_dynamo):
    eager, _ = fit(tmp_path / "eager", False)
    compiled, graphs = fit(tmp_path / "compiled", {"backend": "aot_eager"})
    sizes = graphs.context_sizes
    assert len(set(sizes[3:]) - set(sizes[:2])) >= 2, sizes  # new token counts keep coming after the first steps
    # one graph per (block width, grad mode) and one re-capture when the token count first changes: then reused
    assert graphs.after_step[-1] <= 6 and graphs.after_step[2] == graphs.after_step[-1], (graphs.after_step, sizes)
    a, b = eager.state_dict(), compiled.state_dict()
    assert a.keys() == b.keys()  # compiled in place: names (checkpoints, EMA) unchanged
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k


def test_bad_compile_value_is_named():
    with pytest.raises(ValueError, match="compile must be true/false or a dict"):
        ijepa(compile="yes")
