"""benchmarks/fidelity/report.py: README summary block, per-result pages and plots, index, schema errors, --check."""

import json
import re
import statistics
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "fidelity_result.json"
SCRIPT = ROOT / "benchmarks" / "fidelity" / "report.py"
BEFORE = "# project\n\nintro text | with a pipe\n\n## Measured results\n\nspeed numbers\n"
AFTER = "\nmore results written by hand\n\n## Development\n\nthe end\n"


@pytest.fixture(scope="module")
def report():
    return load_benchmark("benchmarks/fidelity/report.py", "fidelity_report")


@pytest.fixture
def tree(tmp_path):
    """A results folder holding the fixture, an empty docs folder and a README with a stale block."""
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / FIXTURE.name).write_bytes(FIXTURE.read_bytes())
    readme = tmp_path / "README.md"
    readme.write_text(BEFORE + "<!-- results:start -->\nold table\n<!-- results:end -->" + AFTER)
    return tmp_path


def args(tree: Path, *extra: str) -> list[str]:
    return ["--results", str(tree / "results"), "--docs", str(tree / "docs" / "results"),
            "--readme", str(tree / "README.md"), *extra]


def fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def expected_cell(values: list[float], metric: str) -> str:
    """mean ± sample std as the README should print it: accuracy % with 1 decimal, mIoU with 3."""
    digits = 1 if "%" in metric else 3
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


def test_block_replaced_between_markers_and_rest_untouched(report, tree):
    assert report.main(args(tree)) == 0
    text = (tree / "README.md").read_text()
    assert text.startswith(BEFORE + "<!-- results:start -->") and text.endswith("<!-- results:end -->" + AFTER)
    assert "old table" not in text and text.count("<!-- results:start -->") == 1


def test_markers_inserted_at_the_start_of_the_results_section(report, tree):
    (tree / "README.md").write_text(BEFORE + AFTER)
    assert report.main(args(tree)) == 0
    text = (tree / "README.md").read_text()
    head, rest = text.split("<!-- results:start -->")
    assert head == "# project\n\nintro text | with a pipe\n\n## Measured results\n\n"
    assert rest.split("<!-- results:end -->")[1] == "\n\nspeed numbers\n" + AFTER


def test_summary_rows_hold_mean_std_claims_and_run_line(report, tree):
    report.main(args(tree))
    text, data = (tree / "README.md").read_text(), fixture()
    n, link = len(data["seeds"]), f"[{data['variant']}](docs/results/{data['name']}.md)"
    for probe in data["probes"]:
        scores, metric = probe["scores"], probe["metric"]
        row = (f"| {link} | {probe['name']} ({metric}) | {expected_cell(scores['random_init'], metric)} | "
               f"{expected_cell(scores['pretrained'], metric)} ({n}) |")
        assert row in text, row
        extra = [arm for arm in scores if arm not in ("random_init", "pretrained")]
        assert all(expected_cell(scores[arm], metric) not in text for arm in extra)  # extra arms: page only
    claim_rows = [line for line in text.splitlines() if line.startswith(f"| {link} |  |")]
    assert len(claim_rows) == len(data["claims"])
    for row, claim in zip(claim_rows, data["claims"], strict=True):
        assert claim["statement"] in row and claim["criterion"] in row
        assert row.endswith({True: "| ✔ |", False: "| ✘ |", None: "| n/a |"}[claim["holds"]])
    assert f"seeds {', '.join(map(str, data['seeds']))}" in text and data["benchmark"] in text


def test_page_index_and_plots(report, tree):
    report.main(args(tree))
    data, docs = fixture(), tree / "docs" / "results"
    page = (docs / f"{data['name']}.md").read_text()
    assert page.count(f"# {data['variant']}: {data['name']}") == 1 and data["setting"] in page
    for probe in data["probes"]:
        for arm, values in probe["scores"].items():
            assert f"| {arm.replace('_', ' ')} | {expected_cell(values, probe['metric'])} |" in page
    for claim in data["claims"]:
        assert claim["statement"] in page and claim["criterion"] in page
    assert data["notes"] in page and f"python {data['benchmark']}" in page
    assert all(f"{key}:" in page for key in data["config"])
    pngs = sorted(docs.glob("*.png"))
    assert len(pngs) == len(data["probes"]) + 1  # one per probe + the monitors
    assert all(f"]({png.name})" in page for png in pngs)
    assert all(png_size(png) == (600, 350) for png in pngs)
    assert f"[{data['name']}]({data['name']}.md)" in (docs / "README.md").read_text()


@pytest.mark.parametrize("key", ["seeds", "probes[1].metric", "probes[0].scores.random_init", "claims[1].holds"])
def test_missing_key_fails_naming_key_and_file(report, tree, capsys, key):
    data, path = fixture(), tree / "results" / FIXTURE.name
    *parents, last = key.replace("[", ".").replace("]", "").split(".")
    holder = data
    for part in parents:
        holder = holder[int(part)] if part.isdigit() else holder[part]
    del holder[last]
    path.write_text(json.dumps(data))
    with pytest.raises(report.ResultError, match=re.escape(f"{path}: missing key '{key}'")):
        report.render(tree / "results", tree / "docs", tree / "README.md")
    assert report.main(args(tree)) == 2
    err = capsys.readouterr().err
    assert str(path) in err and f"'{key}'" in err
    assert not (tree / "docs").exists()  # nothing written from a broken result


def test_wrong_type_fails_naming_key(report, tree):
    data, path = fixture(), tree / "results" / FIXTURE.name
    data["probes"][0]["scores"]["pretrained"] = data["probes"][0]["scores"]["pretrained"][:-1]
    path.write_text(json.dumps(data))
    with pytest.raises(report.ResultError, match=r"'probes\[0\]\.scores\.pretrained' should be a list of 3"):
        report.render(tree / "results", tree / "docs", tree / "README.md")


def test_check_detects_stale_block_and_page(report, tree, capsys):
    assert report.main(args(tree, "--check")) == 1  # nothing rendered yet
    report.main(args(tree))
    assert report.main(args(tree, "--check")) == 0
    readme = tree / "README.md"
    readme.write_text(readme.read_text().replace(" ± ", " +- ", 1))
    capsys.readouterr()
    assert report.main(args(tree, "--check")) == 1
    assert str(readme) in capsys.readouterr().err
    report.main(args(tree))
    data = fixture()
    data["monitors"]["pretrained"]["train/rankme"][0][1] += 1.0  # only a plot's data: the page's digest moves
    (tree / "results" / FIXTURE.name).write_text(json.dumps(data, indent=1))
    assert report.main(args(tree, "--check")) == 1
    assert f"{data['name']}.md" in capsys.readouterr().err
    run = subprocess.run([sys.executable, str(SCRIPT), *args(tree, "--check")], capture_output=True, text=True)
    assert run.returncode == 1 and f"{data['name']}.md" in run.stderr  # the CLI, as CI calls it


def test_idempotent(report, tree):
    def snapshot():
        return {p: p.read_bytes() for p in sorted(tree.rglob("*")) if p.is_file()}

    report.main(args(tree))
    first = snapshot()
    report.main(args(tree))
    assert snapshot() == first


def test_repository_outputs_are_up_to_date(report):
    """The committed README block and docs/results/ match benchmarks/results/*.json (rerun report.py if not)."""
    assert report.main(["--check"]) == 0
