"""SIGReg: small for a standard normal sample, large for collapsed or anisotropic ones, equal to a hand computation
of the Epps-Pulley integral, the same loss and gradients from 2 processes on halves of a batch as from 1 process on
all of it, and clear errors for bad settings. (Equality with the reference code: benchmarks/fidelity/
reference_parity.py's SIGReg section and tests/test_reference_parity.py.)"""

import math
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import ROOT

from jepa_lightning.losses import SIGReg, random_directions


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_standard_normal_scores_low_and_collapsed_or_anisotropic_high():
    sigreg = SIGReg(num_slices=256)
    normal = sigreg(torch.randn(1024, 32, generator=gen(1)), gen())
    collapsed = sigreg(torch.randn(1, 32, generator=gen(2)).expand(1024, -1), gen())
    anisotropic = sigreg(torch.randn(1024, 32, generator=gen(3)) * torch.linspace(0.05, 3.0, 32), gen())
    shifted = sigreg(torch.randn(1024, 32, generator=gen(4)) + 1.0, gen())
    assert normal < 2.0
    assert collapsed > 100 * normal and anisotropic > 20 * normal and shifted > 20 * normal


def test_statistic_equals_a_hand_computation():
    x = [0.5, -1.0, 2.0, 0.25]
    t_max, knots = 3.0, 7
    expected = 0.0
    for j in range(knots):  # trapezoid on [0, t_max], doubled for the negative half line
        t = t_max * j / (knots - 1)
        re = sum(math.cos(t * v) for v in x) / len(x)
        im = sum(math.sin(t * v) for v in x) / len(x)
        integrand = ((re - math.exp(-t * t / 2)) ** 2 + im**2) * math.exp(-t * t / 2)
        expected += integrand * (t_max / (knots - 1)) * (1.0 if j in (0, knots - 1) else 2.0)
    expected *= len(x)
    got = SIGReg(num_slices=1, knots=knots, t_max=t_max)(torch.tensor(x)[:, None], directions=torch.ones(1, 1))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_views_are_separate_samples_and_directions_are_unit():
    a = random_directions(16, 64, gen(5))
    assert torch.allclose(a.norm(dim=0), torch.ones(64))
    z = torch.randn(3, 128, 16, generator=gen(6))
    sigreg = SIGReg(num_slices=64)
    per_view = torch.stack([sigreg(v, directions=a) for v in z])
    assert torch.allclose(sigreg(z, directions=a), per_view.mean())


@pytest.mark.parametrize("kwargs, message", [({"num_slices": 0}, "num_slices must be an integer >= 1"),
                                             ({"knots": 1}, "knots must be an integer >= 2"),
                                             ({"num_slices": 2.5}, "num_slices must be an integer"),
                                             ({"t_max": 0.0}, "t_max must be > 0")])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SIGReg(**kwargs)


def test_bad_embedding_shape_is_named():
    with pytest.raises(ValueError, match=r"embeddings \[N, D\] or \[V, N, D\]"):
        SIGReg()(torch.randn(4))


# Each rank: the same network and directions, its half of the batch, SIGReg, backward, gradients averaged over the
# ranks as DDP does; rank 0 saves the loss and the gradients.
SCRIPT = textwrap.dedent('''
    import sys, torch, torch.distributed as dist
    from jepa_lightning.losses import SIGReg
    out = sys.argv[1]
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    net = torch.nn.Linear(8, 16)
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    z = net(x.chunk(world)[rank])
    loss = SIGReg(num_slices=32)(z, torch.Generator().manual_seed(2))
    loss.backward()
    for p in net.parameters():
        dist.all_reduce(p.grad)
        p.grad /= world
    if rank == 0:
        torch.save({"loss": loss.detach(), "grads": [p.grad for p in net.parameters()]}, out)
    dist.destroy_process_group()
''')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_on_halves_equal_one_process_on_the_whole_batch(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "WORLD_SIZE": "2", "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "rank0.pt")], cwd=ROOT,
                              env={**env, "RANK": str(r)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(2)]
    try:
        logs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), logs
    two = torch.load(tmp_path / "rank0.pt")
    torch.manual_seed(0)
    net = torch.nn.Linear(8, 16)
    x = torch.randn(64, 8, generator=gen(1))
    loss = SIGReg(num_slices=32)(net(x), gen(2))
    loss.backward()
    assert torch.allclose(two["loss"], loss.detach(), rtol=1e-5, atol=1e-6)
    for a, b in zip(two["grads"], [p.grad for p in net.parameters()]):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), (a - b).abs().max()
    # a per-rank statistic (the common mistake) would differ: each half is its own, smaller sample
    halves = torch.stack([SIGReg(num_slices=32)(h, gen(2)) for h in net(x).chunk(2)]).mean()
    assert not torch.allclose(halves, loss, rtol=1e-3)


# ------------------------------------------------------------------------------------- the guard in JEPAModule
def test_guard_adds_the_term_with_the_same_directions_for_the_same_step():
    from test_ijepa import tiny_ijepa

    model = tiny_ijepa(sigreg_weight=0.5, sigreg_slices=64)
    model.log = lambda *a, **k: None
    z = torch.randn(16, 32, generator=gen(7))
    model._step_index = 5
    a = model.sigreg_term(z)
    model._step_index = 6
    b = model.sigreg_term(z)
    model._step_index = 5  # a resumed run at the same step draws the same directions
    assert model.sigreg_term(z) == a and b != a


def test_guard_trains_a_method_and_logs_the_term(tmp_path):
    from lightning.pytorch import Trainer
    from test_ijepa import tiny_ijepa

    from datamodules import DigitsDataModule

    model = tiny_ijepa(sigreg_weight=1.0, sigreg_slices=64)
    trainer = Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                      default_root_dir=tmp_path)
    trainer.fit(model, datamodule=DigitsDataModule(image_size=16, batch_size=16))
    logged = trainer.callback_metrics
    assert trainer.global_step == 3 and "train/sigreg" in logged
    assert logged["train/loss"] > logged["train/sigreg"] > 0  # the loss includes the term


def test_guard_through_a_projector_regularises_its_output_and_trains_it(tmp_path):
    """With `sigreg_projector`, SIGReg is of the projector's output (same directions as without it for the same
    step), the projector is trained with the method (in the optimizer, weights moved by a short fit) and is kept
    out of the hyperparameters (a module), and checkpoints carry it."""
    from lightning.pytorch import Trainer
    from test_ijepa import tiny_ijepa

    from datamodules import DigitsDataModule
    from jepa_lightning.masks import step_generator
    from jepa_lightning.methods.base import SIGREG_STREAM
    from jepa_lightning.nn import Projector

    model = tiny_ijepa(sigreg_weight=1.0, sigreg_slices=64, sigreg_projector=Projector(32, hidden=16, out_dim=8))
    model.log = lambda *a, **k: None
    model._step_index = 3
    z = torch.randn(16, 32, generator=gen(4))
    g = step_generator(model.mask_seed + SIGREG_STREAM, 0, 3, z.device)
    expected = model.sigreg(model.sigreg_projector(z), directions=random_directions(8, 64, g))
    assert torch.allclose(model.sigreg_term(z), expected) and "sigreg_projector" not in model.hparams
    before = [p.detach().clone() for p in model.sigreg_projector.parameters()]
    trainer = Trainer(max_steps=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=DigitsDataModule(image_size=16, batch_size=16))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.sigreg_projector.parameters()))
    ckpt = torch.load(next(tmp_path.rglob("*.ckpt")), weights_only=True)
    assert any(k.startswith("sigreg_projector.") for k in ckpt["state_dict"])


def _no_ema_cases():
    """(name, factory(**kw), batch for `objective`) of the methods whose targets come from their encoder."""
    from test_ijepa import tiny_ijepa
    from test_seq_jepa import tiny_model as tiny_seq
    from test_t_jepa import tiny_tjepa
    from test_video_methods import clips, encoder, predictor

    from jepa_lightning.masks import step_generator
    from jepa_lightning.methods import VJEPA

    def masked(model, batch):
        batch["masks"] = model.sample_masks(batch, step_generator(0, 0, 0))
        return batch

    return [("ijepa", tiny_ijepa, lambda m: masked(m, {"image": torch.randn(4, 3, 16, 16, generator=gen(1))})),
            ("tjepa", tiny_tjepa, lambda m: masked(m, {"num": torch.rand(8, 5, generator=gen(1)),
                                                       "cat": torch.randint(0, 3, (8, 2), generator=gen(2))})),
            ("seq_jepa", lambda **kw: tiny_seq(target_norm="batch", **kw),
             lambda m: {"views": torch.randn(6, 4, 3, 12, 12, generator=gen(1)),
                        "rel_actions": torch.randn(6, 3, 6, generator=gen(2))}),
            ("vjepa", lambda **kw: VJEPA(encoder(), predictor(), **kw), lambda m: masked(m, {"video": clips()}))]


@pytest.mark.parametrize("case", range(4), ids=["ijepa", "tjepa", "seq_jepa", "vjepa"])
def test_without_an_ema_teacher_the_encoder_gives_its_own_targets_under_stop_gradient(case):
    """ema=None: no teacher; the targets are the context encoder's own outputs, without gradient: equal to those of
    the same method whose EMA teacher is (still) a copy of the encoder, and the loss backpropagates through the
    prediction path only. The guard then holds such a run (benchmarks/fidelity/sigreg_guard.py's no_ema arms)."""
    _, factory, make_batch = _no_ema_cases()[case]
    torch.manual_seed(0)
    plain = factory(ema=None)
    with_teacher = factory()
    with_teacher.load_state_dict({**plain.state_dict(), **{f"teacher.module.{k}": v for k, v in
                                                          plain.encoder.state_dict().items()}}, strict=False)
    assert plain.teacher is None and plain.target_network is plain.encoder
    batch = make_batch(plain)
    out = plain.objective(batch)
    expected = with_teacher.objective(batch)
    assert not out.targets.requires_grad and torch.allclose(out.targets, expected.targets, atol=1e-6)
    assert torch.allclose(out.loss, expected.loss, atol=1e-6)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in plain.encoder.parameters())


def test_guard_errors_are_named():
    from test_ijepa import tiny_ijepa

    with pytest.raises(ValueError, match="sigreg_weight must be a finite number >= 0"):
        tiny_ijepa(sigreg_weight=-1.0)
    model = tiny_ijepa(sigreg_weight=1.0)
    with pytest.raises(ValueError, match="IJEPA declares no embeddings for SIGReg"):
        model.sigreg_term(None)
    from jepa_lightning.nn import Projector

    with pytest.raises(ValueError, match="sigreg_projector is given but sigreg_weight is 0"):
        tiny_ijepa(sigreg_projector=Projector(32, hidden=16, out_dim=8))
    model = tiny_ijepa(sigreg_weight=1.0, sigreg_projector=Projector(64, hidden=16, out_dim=8))
    with pytest.raises(ValueError, match=r"in_dim=64, got \[16, 32\].*\(32\)"):
        model.sigreg_term(torch.randn(16, 32))
    with pytest.raises(ValueError, match="Projector hidden must be an integer >= 1, got 0"):
        Projector(32, hidden=0)


def test_imitation_and_lidar_methods_declare_embeddings_too():
    """ACT-JEPA (the policy encoder's mean token) and AD-L-JEPA (the BEV encoder's output averaged over the grid)
    give the guard embeddings with gradients, one row per sample."""
    from test_act_jepa import random_batch
    from test_act_jepa import tiny_model as tiny_act
    from test_adl_jepa import sparse_bev
    from test_adl_jepa import tiny_model as tiny_adl

    act = tiny_act()
    act._trainer = None
    out = act.objective(random_batch())
    assert out.embeddings.shape == (5, 32) and out.embeddings.requires_grad
    adl = tiny_adl()
    adl.log = lambda *a, **k: None
    batch = {"bev": sparse_bev()}
    batch["masks"] = adl.sample_masks(batch, gen(0))
    out = adl.objective(batch)
    assert out.embeddings.shape == (4, 16) and out.embeddings.requires_grad
    assert torch.isfinite(SIGReg(num_slices=16)(out.embeddings, gen(1)))


def test_step_flops_count_the_guard():
    """`step_flops` counts the loss a step minimises: with the guard on, SIGReg's projections and characteristic
    function come on top of the objective's FLOPs."""
    from test_ijepa import tiny_ijepa

    from jepa_lightning.eval.flops import step_flops

    counts = []
    for weight in (0.0, 1.0):
        model = tiny_ijepa(sigreg_weight=weight, sigreg_slices=256)
        x = torch.randn(8, 3, 16, 16, generator=gen(3))
        batch = {"image": x, "masks": model.sample_masks({"image": x}, gen(4))}
        counts.append(step_flops(model, batch))
    assert counts[1] > counts[0] > 0
