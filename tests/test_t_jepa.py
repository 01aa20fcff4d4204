"""T-JEPA: feature tokenizer and encoder, feature masks, the objective, frozen heads and the CLI (the benchmark's
smoke test: tests/test_fidelity_smoke.py)."""


import pytest
import torch
from conftest import ROOT

from datamodules.tabular import TabularDataModule
from jepa_lightning.cli import JEPACLI, main
from jepa_lightning.eval.frozen_heads import (
    Head,
    TokenScalars,
    evaluate,
    fit_head,
    fit_linear,
    raw_features,
    select_linear,
    select_mlp,
)
from jepa_lightning.masks.tabular import FeatureMask
from jepa_lightning.masks.utils import Masks
from jepa_lightning.methods.t_jepa import TJEPA
from jepa_lightning.nn.tabular import FeatureTokenizer, TabularEncoder, TabularPredictor

RECIPES = ROOT / "recipes" / "t_jepa"


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_tjepa(num_numeric=5, cards=(3, 4), reg=2, **kwargs) -> TJEPA:
    f = num_numeric + len(cards)
    enc = TabularEncoder(num_numeric, list(cards), embed_dim=16, depth=2, num_heads=2, num_reg_tokens=reg)
    pred = TabularPredictor(f, embed_dim=16, predictor_dim=8, depth=1, num_heads=2, num_reg_tokens=reg)
    return TJEPA(enc, pred, **kwargs)


# ----------------------------------------------------------------------------------------- tokenizer, encoder
def test_tokenizer_numeric_is_weight_times_value_plus_bias_and_categorical_uses_its_rows():
    tok = FeatureTokenizer(3, [2, 4], dim=8)
    num = torch.rand(5, 3)
    cat = torch.stack([torch.tensor([0, 1, 1, 0, 1]), torch.tensor([3, 0, 2, 1, 3])], 1)
    out = tok(num, cat)
    assert out.shape == (5, 5, 8)
    assert torch.equal(out[:, :3], num[..., None] * tok.weight + tok.bias)
    rows = tok.embedding.weight
    assert torch.equal(out[2, 3], rows[1]) and torch.equal(out[2, 4], rows[2 + 2])  # column 1 starts at row 2
    assert torch.equal(out[0, 4], rows[2 + 3])
    assert tok.embedding.num_embeddings == 6


def test_encoder_prepends_reg_tokens_and_encodes_only_kept_features():
    torch.manual_seed(0)
    enc = TabularEncoder(5, [3], embed_dim=16, depth=1, num_heads=2, num_reg_tokens=3).eval()
    num, cat = torch.rand(4, 5), torch.randint(0, 3, (4, 1))
    assert enc(num, cat).shape == (4, 3 + 6, 16)
    keep = torch.tensor([[0, 2], [1, 5], [3, 4], [0, 5]])
    assert enc(num, cat, keep=keep).shape == (4, 3 + 2, 16)
    # a dropped feature does not change the output; a kept one does
    num2 = num.clone()
    num2[0, 1] += 1.0
    assert torch.allclose(enc(num, cat, keep=keep)[0], enc(num2, cat, keep=keep)[0])
    num2[0, 2] += 1.0
    assert not torch.allclose(enc(num, cat, keep=keep)[0], enc(num2, cat, keep=keep)[0])
    # the [REG] tokens are the first R inputs: the same learned vectors for every row
    assert enc.reg_tokens.shape == (1, 3, 16)
    assert TabularEncoder(5, [3], embed_dim=16, depth=1, num_heads=2, num_reg_tokens=0)(num, cat).shape == (4, 6, 16)
    assert (enc.num_features, enc.num_reg_tokens, enc.embed_dim) == (6, 3, 16)



def test_encoder_sincos_table_is_the_reference_one_and_follows_each_feature():
    """pos_embed="sincos": the reference's table (PositionalEncoding: base 100, channel pair k at 100^(-2k/D);
    ours puts the sines before the cosines) over [REG] slots then features; a kept feature keeps its own row."""
    import math

    torch.manual_seed(0)
    enc = TabularEncoder(5, [3], embed_dim=16, depth=1, num_heads=2, num_reg_tokens=2, pos_embed="sincos").eval()
    pos = torch.arange(8.0)[:, None]
    freq = torch.exp(torch.arange(0, 16, 2).float() * (-math.log(100.0) / 16))
    table = torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], 1)
    assert torch.allclose(enc.pos_table[0], table, atol=1e-6)
    num, cat = torch.rand(4, 5), torch.randint(0, 3, (4, 1))
    keep = torch.tensor([[0, 5], [1, 4], [3, 2], [5, 0]])
    reg = enc.reg_tokens.expand(4, -1, -1) + table[:2]
    feats = torch.gather(enc.tokenizer(num, cat) + table[2:], 1, keep[..., None].expand(-1, -1, 16))
    assert torch.allclose(enc(num, cat, keep=keep), enc.transformer(torch.cat([reg, feats], 1)), atol=1e-6)
    assert "pos_table" not in enc.state_dict()  # fixed: not a weight, checkpoints stay as they were
    # at init the table dwarfs x * w + b: across rows, each token moves far less against its size than without it
    with torch.no_grad():
        plain = enc.tokenizer(torch.rand(256, 5), torch.randint(0, 3, (256, 1)))
    spread = [float(t.std(0).mean() / t.pow(2).mean().sqrt()) for t in (plain, plain + table[2:])]
    assert spread[1] < 0.3 * spread[0]
    with pytest.raises(ValueError, match="pos_embed must be 'none' or 'sincos'"):
        TabularEncoder(5, [3], embed_dim=16, depth=1, num_heads=2, pos_embed="learned")

def test_bad_specs_raise():
    with pytest.raises(ValueError, match="cardinalities must be >= 1"):
        FeatureTokenizer(2, [0], 8)
    with pytest.raises(ValueError, match="does not match encoder"):
        TJEPA(TabularEncoder(4, [], 16, 1, 2), TabularPredictor(5, 16, 8, 1, 2))


# --------------------------------------------------------------------------------------------------- masks
@pytest.mark.parametrize("f", [7, 30, 64])
def test_masks_sizes_disjointness_validity(f):
    gen = FeatureMask(context_share=(0.2, 0.4), target_share=(0.2, 0.4), num_targets=4)
    for step in range(20):
        m = gen(16, f, torch.Generator().manual_seed(step))
        b, kc = m.context.shape
        _, t, kt = m.targets.shape
        assert b == 16 and t == 4
        assert max(round(0.2 * f), 1) <= kc <= round(0.4 * f)
        assert max(round(0.2 * f), 1) <= kt <= max(round(0.4 * f), 1)
        assert kc + kt <= f
        for idx in (m.context, m.targets):
            assert int(idx.min()) >= 0 and int(idx.max()) < f
            assert bool((idx.diff(dim=-1) > 0).all())  # sorted, no repeats
        in_ctx = torch.zeros(16, f, dtype=torch.bool).scatter_(1, m.context, True)
        assert not bool(in_ctx.gather(1, m.targets.flatten(1)).any())  # disjoint from the context


def test_masks_are_seeded_random_and_overlap_when_allowed():
    gen = FeatureMask(context_share=(0.5, 0.5), target_share=(0.5, 0.5), num_targets=2, allow_overlap=True)
    a, b = gen(64, 10, torch.Generator().manual_seed(1)), gen(64, 10, torch.Generator().manual_seed(1))
    assert torch.equal(a.context, b.context) and torch.equal(a.targets, b.targets)
    c = gen(64, 10, torch.Generator().manual_seed(2))
    assert not torch.equal(a.context, c.context)
    in_ctx = torch.zeros(64, 10, dtype=torch.bool).scatter_(1, a.context, True)
    assert bool(in_ctx.gather(1, a.targets.flatten(1)).any())  # overlap happens with allow_overlap
    # every feature is used as context about equally often
    counts = torch.bincount(a.context.flatten(), minlength=10).float()
    assert counts.min() > 0.5 * counts.mean()
    with pytest.raises(ValueError, match="cannot hold a context"):
        FeatureMask(context_share=(0.9, 1.0), target_share=(0.2, 0.3))(4, 10)


# ------------------------------------------------------------------------------------------------ objective
def test_objective_gradients_reach_student_and_predictor_not_teacher():
    torch.manual_seed(0)
    model = tiny_tjepa()
    batch = {"num": torch.rand(8, 5), "cat": torch.randint(0, 3, (8, 2)), "label": torch.zeros(8)}
    m = model.sample_masks(batch, torch.Generator().manual_seed(0))
    loss, targets, feats = model.forward_loss(batch["num"], batch["cat"], m)[:3]
    assert torch.isfinite(loss) and feats.shape == (8, 16)
    h = model.teacher(batch["num"], batch["cat"])
    assert torch.equal(targets[3, 1, 0], h[3, 2 + m.targets[3, 1, 0]])  # targets skip the 2 [REG] outputs
    loss.backward()
    assert model.encoder.tokenizer.weight.grad is not None and model.encoder.reg_tokens.grad is not None
    assert model.predictor.mask_token.grad is not None and model.predictor.pos_embed.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.encode(batch).shape == (8, 2 + 7, 16)


def test_reference_indexing_puts_reg_tokens_among_the_mask_slots():
    """The official code's indexing: mask index i is token i of [REG]_1..R, f_0..f_{F-1}, so index 0 (a [REG]
    token) can be a context or target token and the last R features never are."""
    torch.manual_seed(0)
    model = tiny_tjepa(reg=1, reference_indexing=True)
    num, cat = torch.rand(4, 5), torch.randint(0, 3, (4, 2))
    context = torch.tensor([[1, 2], [0, 3], [4, 6], [2, 5]])            # row 1's context holds the [REG] token
    targets = torch.tensor([[[0, 3]], [[1, 2]], [[0, 1]], [[3, 4]]])      # rows 0 and 2 predict the [REG] token
    loss, got = model.forward_loss(num, cat, Masks(context=context, targets=targets))[:2]
    h = model.teacher(num, cat)                                          # [B, 1 + 7, D]
    assert torch.equal(got[0, 0, 0], h[0, 0]) and torch.equal(got[3, 0, 1], h[3, 4])  # slot i = token i
    z = model.encoder(num, cat, keep=context, keep_over_all=True)
    assert z.shape == (4, 2, 16)                                         # the kept tokens alone, [REG] among them
    tokens = model.encoder.tokenizer(num, cat)
    full = torch.cat([model.encoder.reg_tokens.expand(4, -1, -1), tokens], dim=1)
    assert torch.allclose(z, model.encoder.transformer(torch.stack([full[i, context[i]] for i in range(4)])))
    pred = model.predictor(z, context, targets, slots_over_all=True)
    assert torch.allclose(loss, torch.nn.functional.mse_loss(pred, got))
    # the last feature's slot (1 + 7 - 1 = 7) is out of reach of indices drawn in [0, F): never context or target
    m = model.sample_masks({"num": torch.rand(256, 5), "cat": torch.zeros(256, 2, dtype=torch.long)},
                           torch.Generator().manual_seed(1))
    assert int(m.context.max()) <= 6 and int(m.targets.max()) <= 6 and bool((m.targets == 0).any())


def test_feature_count_mismatch_names_the_recipe_keys():
    model = tiny_tjepa()
    with pytest.raises(ValueError, match=r"num_numeric=5.*model.init_args.encoder.init_args.num_numeric"):
        model.encode({"num": torch.rand(2, 4), "cat": torch.zeros(2, 2, dtype=torch.long)})
    model = tiny_tjepa()
    with pytest.raises(ValueError, match=r"categorical column 1 has code 4"):
        model.encode({"num": torch.rand(2, 5), "cat": torch.tensor([[0, 1], [2, 4]])})


def test_loss_goes_down_on_breast_cancer():
    torch.manual_seed(0)
    dm = TabularDataModule(dataset="breast_cancer")
    data = dm.tensors("train")
    model = tiny_tjepa(30, (), reg=1)
    opt = torch.optim.AdamW([*model.encoder.parameters(), *model.predictor.parameters()], lr=3e-3)
    g, losses = torch.Generator().manual_seed(0), []
    for _ in range(40):
        idx = torch.randint(0, len(data["num"]), (64,), generator=g)
        batch = {k: v[idx] for k, v in data.items()}
        loss = model.forward_loss(batch["num"], batch["cat"], model.sample_masks(batch, g))[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.teacher.update(model.encoder, 0.996)
        losses.append(float(loss.detach()))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, (first, last)  # measured: 0.99 -> 0.57


# --------------------------------------------------------------------------------------------- frozen heads
def test_heads_on_raw_features_of_an_easy_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 4, generator=g)
    y = ((x[:, 0] + 0.5 * x[:, 1]) > 0).long()
    res = {kind: fit_head(x[:400], y[:400], x[400:500], y[400:500], "classification", 2, kind, epochs=60, lr=1e-2,
                          x_test=x[500:], y_test=y[500:]) for kind in ("linear", "mlp")}
    assert res["linear"].test > 0.9 and res["mlp"].test > 0.85
    feats = raw_features(torch.rand(3, 2), torch.tensor([[0, 2], [1, 0], [2, 1]]), [3, 3])
    assert feats.shape == (3, 8) and torch.equal(feats[1, 2:], torch.tensor([0., 1, 0, 1, 0, 0]))


def test_regression_rmse_is_in_target_units():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 3, generator=g)
    y = 100.0 + 50.0 * x[:, 0]
    res = fit_head(x[:200], y[:200], x[200:], y[200:], "regression", kind="linear", epochs=150, lr=1e-2)
    pred = res.head.eval()(x[200:])
    by_hand = float(((pred - y[200:]) ** 2).mean().sqrt())
    assert abs(res.val - by_hand) < 1e-3 * max(by_hand, 1.0)
    assert evaluate(res.head, x[200:], y[200:], "regression", 0) == pytest.approx(by_hand, rel=1e-4)
    assert res.val < 5.0  # a linear target: far below the target's spread (50)


def test_linear_head_is_the_converged_l2_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=g) * torch.tensor([1.0, 5.0, 0.1, 1.0, 2.0, 1.0]) + 3.0
    y = (x[:, 0] - 0.2 * x[:, 1] + 0.5 * torch.randn(300, generator=g) > 2.0).long() + (x[:, 3] > 3.5).long()
    l2 = 1e-2
    res = fit_linear(x[:200], y[:200], x[200:], y[200:], "classification", 3, l2=l2)
    z = ((x[:200] - x[:200].mean(0)) / x[:200].std(0)).numpy()
    ref = LogisticRegression(C=1.0 / (l2 * 200), tol=1e-10, max_iter=5000).fit(z, y[:200].numpy())
    ours = torch.softmax(res.head.eval()(x[:200]), -1)
    assert torch.allclose(ours, torch.from_numpy(ref.predict_proba(z)).float(), atol=2e-3)
    assert res.val > 0.6 and res.config == {"kind": "linear", "l2": l2}  # 3 classes


def test_ridge_head_matches_closed_form_and_selection_uses_validation():
    from sklearn.linear_model import Ridge

    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 120, generator=g)  # more features than rows: the dual system
    y = 10.0 + 3.0 * x[:, 0] + torch.randn(80, generator=g)
    res = fit_linear(x[:60], y[:60], x[60:], y[60:], "regression", l2=0.1)
    z = ((x[:60] - x[:60].mean(0)) / x[:60].std(0)).numpy()
    t = ((y[:60] - y[:60].mean()) / y[:60].std()).numpy()
    ref = Ridge(alpha=0.1 * 60).fit(z, t).predict(((x[60:] - x[:60].mean(0)) / x[:60].std(0)).numpy())
    assert torch.allclose(res.head.eval()(x[60:]), torch.from_numpy(ref).float() * y[:60].std() + y[:60].mean(),
                          atol=1e-3)
    # the L2 strength with the lowest validation RMSE is the one selected
    grid = (1e-3, 1e-2, 1e-1, 1.0)
    val = {l2: fit_linear(x[:60], y[:60], x[60:70], y[60:70], "regression", l2=l2).val for l2 in grid}
    best = select_linear(x[:60], y[:60], x[60:70], y[60:70], "regression", l2_grid=grid, x_test=x[70:],
                         y_test=y[70:])
    assert best.config["l2"] == min(val, key=val.get) and len(set(val.values())) == len(grid)
    assert best.test is not None and best.test < y[:60].std()
    with pytest.raises(ValueError, match="l2_grid is empty"):
        select_linear(x, y, x, y, "regression", l2_grid=())


def test_mlp_selection_picks_a_grid_entry_and_rejects_unknown_keys():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 2, generator=g)
    y = (x.norm(dim=1) > 1.1).long()  # not linearly separable
    grid = ({"hidden": 4, "dropout": 0.0}, {"hidden": 64, "dropout": 0.0, "lr": 1e-2})
    res = select_mlp(x[:200], y[:200], x[200:250], y[200:250], "classification", 2, grid=grid, epochs=60,
                     x_test=x[250:], y_test=y[250:])
    assert res.config["hidden"] == 64 and res.test > 0.85
    lin = select_linear(x[:200], y[:200], x[200:250], y[200:250], "classification", 2, x_test=x[250:],
                        y_test=y[250:])
    assert lin.test < res.test
    with pytest.raises(ValueError, match="unknown keys"):
        select_mlp(x, y, x, y, "classification", 2, grid=({"width": 3},))


# ------------------------------------------------------------------------------------------------- CLI, bench
SMALL = ["--model.init_args.encoder.init_args.embed_dim=16", "--model.init_args.encoder.init_args.depth=1",
         "--model.init_args.predictor.init_args.embed_dim=16", "--model.init_args.predictor.init_args.depth=1",
         "--trainer.max_epochs=2", "--trainer.check_val_every_n_epoch=1",
         "--trainer.callbacks.init_args.every_n_epochs=1", "--trainer.callbacks.init_args.epochs=5",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def test_cli_fit_then_validate_reports_frozen_heads(tmp_path):
    recipe = str(RECIPES / "wine_tiny.yaml")
    where = [f"--run_dir={tmp_path / 'runs'}", f"--checkpoint.dirpath={tmp_path / 'ckpt'}"]
    main(["fit", "--config", recipe, *SMALL, *where])
    assert (tmp_path / "ckpt" / "last.ckpt").is_file()
    cli = JEPACLI(args=["validate", "--config", recipe, *SMALL, *where,
                        f"--ckpt_path={tmp_path / 'ckpt' / 'last.ckpt'}"])
    m = cli.trainer.callback_metrics
    assert {"val/linear_acc", "val/mlp_acc", "val/rankme"} <= set(m)
    assert float(m["val/linear_acc"]) > 0.5  # 3 classes: chance is 1/3
    assert float(m["val/rankme"]) > 1.0


def test_jannis_recipe_builds_for_a_user_csv(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,c,label\n" + "".join(f"{i},{i % 7}.5,{'xy'[i % 2]},{i % 3}\n" for i in range(60)))
    cli = JEPACLI(run=False, args=[  # the table's feature spec is linked into the model (no model-side sizes)
        "--config", str(RECIPES / "jannis.yaml"), f"--data.init_args.path={csv}", "--data.init_args.target=label",
        "--data.init_args.num_workers=0", f"--run_dir={tmp_path}"])
    enc = cli.model.encoder
    assert (enc.embed_dim, len(enc.transformer.blocks), enc.num_reg_tokens) == (64, 16, 1)
    assert cli.datamodule.num_numeric == 2 and cli.datamodule.cardinalities == [3]
    assert (enc.num_numeric, list(enc.cardinalities), cli.model.predictor.num_features) == (2, [3], 3)
    assert cli.model.lr == pytest.approx(3.66e-4) and cli.trainer.max_epochs == 300



def test_reference_head_reduces_each_token_to_a_scalar_then_a_deep_batchnorm_mlp():
    torch.manual_seed(0)
    reduce = TokenScalars(3, 4)
    x = torch.randn(5, 3 * 4)
    by_hand = torch.stack([x[:, 4 * t:4 * t + 4] @ reduce.weight[t] + reduce.bias[t] for t in range(3)], dim=1)
    assert torch.allclose(reduce(x), by_hand, atol=1e-6)
    head = Head(12, 2, "reference", hidden=8, depth=3, dropout=0.0, tokens=3)
    assert isinstance(head.net[0], TokenScalars) and head.net[1].in_features == 3
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in head.net) == 2 and head(x).shape == (5, 2)
    assert Head(12, 1, "reference", hidden=8, depth=2).net[0].in_features == 12  # raw features: no reduction
    with pytest.raises(ValueError, match="'linear', 'mlp' or 'reference'"):
        Head(12, 2, "deep")
    with pytest.raises(ValueError, match="3 tokens needs in_dim divisible"):
        Head(13, 2, "reference", tokens=3)


def test_reference_head_learns_an_easy_problem_from_tokens():
    torch.manual_seed(0)
    tokens = torch.randn(600, 4, 6)
    y = (tokens[:, 2, 0] > 0).long()  # one coordinate of one token decides the class
    x = tokens.flatten(1)
    res = select_mlp(x[:400], y[:400], x[400:500], y[400:500], "classification", 2, kind="reference", tokens=4,
                     grid=({"hidden": 32, "depth": 2, "dropout": 0.0, "lr": 1e-2, "weight_decay": 0.0},),
                     epochs=60, patience=10, batch_size=64, x_test=x[500:], y_test=y[500:])
    assert res.test > 0.9 and res.config["kind"] == "reference" and res.config["tokens"] == 4
