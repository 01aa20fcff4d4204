import math

import pytest
import torch
from torch import nn

from jepa_lightning.nn import TransformerPredictor, VisionTransformer
from jepa_lightning.optim import WarmupCosineSchedule, cosine, linear, param_groups, warmup_cosine
from jepa_lightning.targets import EMATeacher, FrozenTeacher, ema_init_share, ema_momentum, ema_update


def test_warmup_cosine_values():
    assert warmup_cosine(0, 100, 10, 0.1, 1.0, 0.0) == pytest.approx(0.1)
    assert warmup_cosine(5, 100, 10, 0.1, 1.0, 0.0) == pytest.approx(0.55)
    assert warmup_cosine(10, 100, 10, 0.1, 1.0, 0.0) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10, 0.1, 1.0, 0.0) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 10, 0.1, 1.0, 0.0) == pytest.approx(0.0)
    assert warmup_cosine(500, 100, 10, 0.1, 1.0, 0.0) == pytest.approx(0.0)  # held after the end
    assert cosine(25, 100, 0.04, 0.4) == pytest.approx(0.4 + 0.5 * (0.04 - 0.4) * (1 + math.cos(math.pi / 4)))
    assert linear(50, 100, 0.996, 1.0) == pytest.approx(0.998)


def test_param_groups_no_decay_on_norms_biases_tokens():
    pred = TransformerPredictor(grid_size=(2, 2), embed_dim=8, predictor_dim=8, depth=1, num_heads=2)
    groups = param_groups(pred, 0.05)
    decay = {id(p) for p in groups[0]["params"]}
    names = {id(p): n for n, p in pred.named_parameters()}
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0
    assert all(names[i].endswith("weight") and "norm" not in names[i] for i in decay)
    assert id(pred.mask_tokens) not in decay
    assert sum(len(g["params"]) for g in groups) == len(list(pred.parameters()))


def test_schedule_steps_lr_and_weight_decay_per_optimizer_step():
    model = nn.Linear(4, 4)
    opt = torch.optim.AdamW(param_groups(model, 0.04), lr=1.0)
    sched = WarmupCosineSchedule(opt, total_steps=20, warmup_steps=4, start_lr=0.0, lr=1.0, final_lr=0.0,
                                 weight_decay=0.04, final_weight_decay=0.4)
    seen = []
    for _ in range(20):
        seen.append((opt.param_groups[0]["lr"], opt.param_groups[0]["weight_decay"], opt.param_groups[1]["lr"]))
        opt.step()
        sched.step()
    assert seen[0][0] == pytest.approx(0.0) and seen[2][0] == pytest.approx(0.5) and seen[4][0] == pytest.approx(1.0)
    assert seen[10][0] == pytest.approx(warmup_cosine(10, 20, 4, 0.0, 1.0, 0.0))
    assert seen[0][1] == pytest.approx(0.04) and seen[19][1] == pytest.approx(cosine(19, 20, 0.04, 0.4))
    assert opt.param_groups[1]["weight_decay"] == 0.0  # bias group never decays
    # resume: a fresh scheduler loaded from the state continues on the same curve
    state = sched.state_dict()
    opt2 = torch.optim.AdamW(param_groups(model, 0.04), lr=1.0)
    sched2 = WarmupCosineSchedule(opt2, 20, 4, 0.0, 1.0, 0.0, 0.04, 0.4)
    sched2.load_state_dict(state)
    sched.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])


def test_ema_teacher_takes_the_students_normalization_statistics():
    student = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    teacher = EMATeacher(student)
    student.train()(torch.randn(32, 4) * 3 + 1)  # moves the student's running mean/var only
    bn_s, bn_t = student[1], teacher.module[1]
    assert not torch.allclose(bn_t.running_mean, bn_s.running_mean)
    teacher.update(student, 0.99)
    assert torch.equal(bn_t.running_mean, bn_s.running_mean) and torch.equal(bn_t.running_var, bn_s.running_var)
    assert int(bn_t.num_batches_tracked) == 1


def test_ema_update_equals_formula():
    torch.manual_seed(0)
    student = VisionTransformer(img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2)
    teacher = EMATeacher(student)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in teacher.module.parameters()]
    teacher.update(student, 0.9)
    for b, t, s in zip(before, teacher.module.parameters(), student.parameters()):
        assert torch.allclose(t, 0.9 * b + 0.1 * s, atol=1e-6)
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training and not teacher.module.training
    with pytest.raises(ValueError, match="parameter tensors"):
        ema_update(teacher.module, nn.Linear(2, 2), 0.5)


def test_teacher_runs_without_graph_and_frozen_teacher_never_moves():
    student = nn.Linear(3, 3)
    frozen = FrozenTeacher(nn.Linear(3, 3))
    out = frozen(torch.randn(2, 3, requires_grad=True))
    assert not out.requires_grad
    assert all(not p.requires_grad for p in frozen.parameters())
    assert not hasattr(frozen, "update") and student.weight.requires_grad


def test_frozen_teacher_loads_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    trained = nn.Linear(3, 3)
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in trained.state_dict().items()}}, tmp_path / "s1.ckpt")
    teacher = FrozenTeacher(nn.Linear(3, 3), checkpoint=str(tmp_path / "s1.ckpt"), key="encoder")
    assert torch.equal(teacher.module.weight, trained.weight) and not teacher.module.weight.requires_grad
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        FrozenTeacher(nn.Linear(3, 3), checkpoint=str(tmp_path / "missing.ckpt"))


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("average_start", [False, True])
def test_ema_init_share_is_the_product_of_the_applied_momenta(average_start, schedule):
    """A teacher that starts at 1 and follows a student held at 0 keeps exactly the init's share: after k
    updates with the schedule's momenta it equals ema_init_share(k)."""
    total, start, end = 880, 0.999, 1.0
    teacher, student = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    nn.init.ones_(teacher.weight), nn.init.zeros_(student.weight)
    for k in range(1, total + 1):
        ema_update(teacher, student, ema_momentum(k, total, start, end, average_start, schedule))
        if k in (1, 10, 440, 880):
            assert teacher.weight.item() == pytest.approx(
                ema_init_share(k, total, start, end, average_start, schedule), rel=1e-4, abs=1e-12)
    # the audit's number: the paper's schedule at 0.999 -> 1 keeps ~0.64 of the init after 880 updates; the
    # half cosine has the same mean momentum, so about as much survives the whole run, but less at mid-run
    assert ema_init_share(total, total, start, end, average_start=False) == pytest.approx(0.644, abs=0.01)
    assert ema_init_share(total, total, start, end, False, "cosine") == pytest.approx(0.644, abs=0.01)
    assert ema_init_share(440, total, start, end, False, "cosine") < ema_init_share(440, total, start, end, False)
    assert ema_init_share(0, total, start, end, average_start, schedule) == 1.0


def test_ema_cosine_schedule_is_the_references_half_cosine():
    """seq-JEPA's reference: momentum 1 - (1 - base) (cos(pi t) + 1) / 2 at the fraction t of training."""
    total, base = 1000, 0.996
    for k in (1, 251, 500, 800, 1001):
        t = (k - 1) / total
        expected = 1 - (1 - base) * (math.cos(math.pi * t) + 1) / 2
        assert ema_momentum(k, total, base, 1.0, average_start=False, schedule="cosine") == pytest.approx(expected)
    assert ema_momentum(500, total, base, 1.0, schedule="cosine") < ema_momentum(500, total, base, 1.0)
    with pytest.raises(ValueError, match="EMA schedule must be one of .*'step'"):
        ema_momentum(5, total, base, 1.0, schedule="step")


def test_ema_momentum_average_start_then_the_papers_schedule():
    total = 10_000
    assert ema_momentum(1, total, 0.996, 1.0) == 0.0                   # update 1 copies the student
    assert ema_momentum(4, total, 0.996, 1.0) == pytest.approx(0.75)    # running average of 4 students
    # past 1 / (1 - 0.996) = 250 updates the paper's linear schedule is the larger momentum
    for k in (300, 5000):
        assert ema_momentum(k, total, 0.996, 1.0) == pytest.approx(0.996 + 0.004 * (k - 1) / total)
        assert ema_momentum(k, total, 0.996, 1.0, average_start=False) == ema_momentum(k, total, 0.996, 1.0)
    # ... and as the schedule nears 1, the teacher never holds more of the past than the plain average
    assert ema_momentum(total, total, 0.996, 1.0) == pytest.approx(1 - 1 / total)
    assert ema_momentum(1, total, 0.996, 1.0, average_start=False) == 0.996
