"""The helpers every lesson starts with: fast mode, data directory, seeding, tables, meta models."""
import pytest
import torch

from mobileblocks_edu import lab
from mobileblocks_edu.analysis.complexity import count_flops, count_params
from mobileblocks_edu.blocks.irb import InvertedResidual


def test_fast_mode_flag(monkeypatch):
    for value, expected in [("1", True), ("true", True), ("YES", True), ("0", False), ("", False), ("no", False)]:
        monkeypatch.setenv("MBE_FAST", value)
        assert lab.is_fast() is expected
        assert lab.pick("normal", fast="fast") == ("fast" if expected else "normal")
    monkeypatch.delenv("MBE_FAST")
    assert not lab.is_fast()


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("MBE_DATA", str(tmp_path))
    assert lab.data_dir() == tmp_path
    monkeypatch.delenv("MBE_DATA")
    root = lab.repo_root()
    assert root is not None and (root / "_config.yml").is_file()  # the tests run from a checkout
    assert lab.data_dir() == root / "data"
    assert lab.results_dir() == root / "lessons" / "results"


def test_setup_seeds_and_reports(capsys, monkeypatch):
    monkeypatch.setenv("MBE_FAST", "1")
    a = (lab.setup(seed=3), torch.rand(3))
    b = (lab.setup(seed=3, quiet=True), torch.rand(3))
    assert torch.equal(a[1], b[1])
    assert a[0].fast and a[0].device.type in ("cpu", "cuda")
    out = capsys.readouterr().out
    assert "fast mode ON" in out and out.count("\n") == 1  # quiet=True printed nothing


def test_on_meta_counts_like_a_real_model():
    real, meta = InvertedResidual(16, 16), lab.on_meta(InvertedResidual, 16, 16)
    assert next(meta.parameters()).device.type == "meta"
    assert count_params(meta) == count_params(real)
    assert count_flops(meta, (1, 16, 14, 14), "fvcore") == count_flops(real, (1, 16, 14, 14), "fvcore")
    assert lab.on_meta("mobilenetv2_100_cifar").num_classes == 10


def test_randomize_changes_every_parameter_and_bn_statistic():
    m = InvertedResidual(8, 8)
    before = {k: v.clone() for k, v in m.state_dict().items() if v.is_floating_point()}
    lab.randomize_(m)
    after = m.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)


def test_table_renders_escaped_html():
    out = lab.html_table(["a", "b<c"], [[1, "x&y"]], caption="t")
    assert "<th>b&lt;c</th>" in out and "<td>x&amp;y</td>" in out and "<caption>t</caption>" in out


def test_show_source_shows_library_code():
    code = lab.show_source(InvertedResidual.forward)
    assert code.data.lstrip().startswith("def forward")
    first_two = lab.show_source(InvertedResidual.forward, lines=(1, 2)).data
    assert first_two.splitlines() == code.data.splitlines()[:2]


def test_run_time_measures_from_setup(capsys, monkeypatch):
    clock = iter([100.0, 142.4])  # setup() reads the clock once, run_time() once
    monkeypatch.setattr(lab.time, "perf_counter", lambda: next(clock))
    lab.setup(quiet=True)
    assert lab.run_time() == pytest.approx(42.4)
    assert "This lesson ran in 42 s" in capsys.readouterr().out
