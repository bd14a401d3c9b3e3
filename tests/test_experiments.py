"""The training lab's named experiments: trained models by name, the experiment list."""
import math
import shlex
from dataclasses import replace

import pytest
import torch

import mobileblocks_edu as mbe
from mobileblocks_edu import lab
from mobileblocks_edu.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from mobileblocks_edu.train import experiments as E


@pytest.fixture
def toy_experiment(monkeypatch):
    exp = E.Experiment("toy_cifar", "ghostnet_100_cifar", epochs=1, seeds=(0, 1), group="ablation",
                       model_args=(("num_features", 64),))
    monkeypatch.setitem(E.EXPERIMENTS, exp.name, exp)
    return exp


def test_load_trained_returns_the_saved_weights_in_eval_mode(toy_experiment, tmp_path):
    torch.manual_seed(0)
    trained = mbe.create_model("ghostnet_100_cifar", num_features=64).eval()
    for m in trained.modules():  # non-trivial BN statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    half = {k: v.half() if v.is_floating_point() else v for k, v in trained.state_dict().items()}
    save_checkpoint(half, tmp_path / "toy_cifar_seed1.pt")

    assert E.load_trained("toy_cifar", seed=0, checkpoints=tmp_path) is None  # not collected
    model = E.load_trained("toy_cifar", seed=1, checkpoints=tmp_path)
    assert model is not None and not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, half[k].to(v.dtype)), k
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = trained.half().float()(x)
        torch.testing.assert_close(model(x), ref)


def test_load_trained_refuses_weights_of_another_model(toy_experiment, tmp_path):
    other = mbe.create_model("ghostnet_100_cifar")  # 1280 features: other shapes
    save_checkpoint(other.state_dict(), tmp_path / "toy_cifar_seed0.pt")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        E.load_trained("toy_cifar", checkpoints=tmp_path)


def test_names_and_model_aliases():
    assert E.resolve_experiment("emo_1m_cifar").name == "cifar10_emo_1m"  # a model with one main experiment
    assert E.resolve_experiment("cifar10_emo_1m").model == "emo_1m_cifar"
    with pytest.raises(ValueError, match="unknown experiment"):
        E.load_trained("no_such_experiment")
    path = E.checkpoint_path("cifar10_emo_1m", 2)
    assert path.name == "cifar10_emo_1m_seed2.pt" and path.parent.name == "checkpoints"


# ------------------------------------------------------------------ the experiment list
def test_experiment_list_is_consistent():
    from mobileblocks_edu import train

    names = [e.name for e in E.list_experiments()]
    assert len(names) == len(set(names)) == len(E.EXPERIMENTS)
    for e in E.list_experiments():
        opts = train.options(shlex.split(e.command(0))[3:])  # the printed command parses as it is run
        assert (opts["model"], opts["epochs"], opts["seed"]) == (e.model, e.epochs, 0)
        assert opts["out"] == f"runs/{e.name}_seed0"
        assert E.resolve_experiment(e.name) is e
        assert len(e.seeds) >= (3 if e.group == "cifar10" else 2 if e.group == "ablation" else 1), e.name
    # every main model name leads to its experiment
    for e in E.list_experiments("cifar10") + E.list_experiments("imagenette"):
        assert E.resolve_experiment(e.model) is e
    # the EMO ablations differ from the main EMO run only in the model's arguments ...
    main = E.get_experiment("cifar10_emo_1m")
    emo_ablations = [e for e in E.list_experiments("ablation") if e.model == "emo_1m_cifar"]
    assert emo_ablations
    for e in emo_ablations:
        assert (e.data, e.epochs, e.recipe, e.batch_size, e.options) == (main.data, main.epochs, main.recipe,
                                                                         main.batch_size, main.options)
        assert set(e.seeds) <= set(main.seeds) and e.model_args
    # ... and MoCoViT's Table 7 rows only in the model
    t7 = [E.get_experiment(n) for n in ("ablation_ghostnet_050", "ablation_mocovit_050_sa_mlp",
                                       "ablation_mocovit_050_sa_moffn", "ablation_mocovit_050")]
    assert len({(e.data, e.epochs, e.recipe, e.batch_size, e.options, e.seeds) for e in t7}) == 1
    assert E.resolve_experiment("ablation_emo_1m_no_attn").name == "ablation_emo_1m_dw_only"


@pytest.mark.parametrize("name", sorted(E.EXPERIMENTS))
def test_every_experiment_builds_its_model(name):
    m = E.build_model(name)
    assert m.num_classes == 10
    kind = E.get_experiment(name).model
    assert type(m) is type(mbe.create_model(kind))


def test_dry_run_of_a_real_experiment(cifar, tmp_path, monkeypatch):
    """The real command of an ablation, shortened to one tiny epoch, runs, is collected, and its
    weights come back through load_trained."""

    exp = E.get_experiment("ablation_mocovit_050_sa_mlp")
    runs = tmp_path / "runs"
    tiny = ["--data-dir", str(cifar), "--offline", "--no-progress", "--threads", "1"]  # how, not what
    monkeypatch.setitem(E.EXPERIMENTS, exp.name, replace(exp, seeds=(0,), epochs=1, batch_size=8))
    assert E.run_experiment(exp.name, 0, runs, tiny) == 0
    written = E.collect(exp.name, runs, tmp_path / "results", tmp_path / "ckpt")
    assert [p.name for p in written] == [f"{exp.name}_seed0.json", f"{exp.name}_seed0.pt"]
    result = E.load_results(exp.name, tmp_path / "results")[0]
    assert result["command"].startswith("python -m mobileblocks_edu.train --model mocovit_050_cifar")
    assert "--model-arg 'attn_layer=\"mhsa\"'" in result["command"] and result["model_kwargs"]["ffn_layer"] == "mlp"
    assert result["status"] == "done" and result["seed"] == 0 and result["train_images"] == 20
    model = E.load_trained(exp.name, checkpoints=tmp_path / "ckpt")
    last = read_checkpoint(runs / f"{exp.name}_seed0" / "last.pt")["model"]
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, last[k].half().to(v.dtype))
    assert E.summarize(exp.name, tmp_path / "results")["mean"] == result["final"]["top1"]


# ------------------------------------------------------------------ the committed results
def _committed_results():
    folder = lab.results_dir()
    return sorted(folder.glob("*_seed*.json")) if folder else []  # training runs (not benchmarks)


@pytest.mark.parametrize("path", _committed_results(), ids=lambda p: p.stem)
def test_committed_result_matches_its_experiment(path):
    """Every committed result is a finished run of a defined experiment, made by its command."""
    import json

    r = json.loads(path.read_text())
    name, _, seed = path.stem.rpartition("_seed")
    exp = E.get_experiment(name)
    assert int(seed) == r["seed"] and r["seed"] in exp.seeds
    assert r["status"] == "done" and r["epochs_done"] == exp.epochs == len(r["history"])
    assert r["command"].startswith(exp.command(r["seed"]))  # (+ the thread count it ran with)
    assert r["code_version"]["git_commit"] and r["code_version"]["git_dirty"] is False
    assert r["final"]["n"] == r["val_images"] and 0 <= r["final"]["top1"] <= 100
    model = E.build_model(name)
    assert r["params"] == mbe.count_params(model)
    shape = (1, *r["input_size"])  # the counts every lesson reads from the result (fused attention counted)
    assert (r["macs"], r["fvcore_flops"]) == (mbe.count_flops(model, shape, "macs"),
                                              mbe.count_flops(model, shape, "fvcore"))

    d = E.run_data(r)  # the committed run described from its result file alone
    assert d["steps"] == r["steps_per_epoch"] * r["epochs_done"] and d["img_size"] == r["input_size"][-1]
    assert f"{d['train_images']:,}" in E.describe_run_data(r) and f"({d['steps']:,} steps)" in E.describe_run_data(r)


def test_committed_checkpoints_load():
    folder = lab.checkpoints_dir()
    files = sorted(folder.glob("*.pt")) if folder else []
    for path in files:
        name, _, seed = path.stem.rpartition("_seed")
        model = E.load_trained(name, int(seed))
        assert model is not None and not model.training
        assert (lab.results_dir() / f"{path.stem}.json").is_file()  # weights come with their result


def test_plateau_gain_is_the_last_quarters_gain():
    from mobileblocks_edu.train import results

    rising = [{"val_top1": v} for v in (10, 20, 30, 40, 50, 60, 70, 80)]  # last quarter: epochs 7-8
    assert results.plateau_gain(rising) == 80 - 60 and not results.plateaued(rising)
    flat = [{"val_top1": v} for v in (10, 40, 55, 60, 61, 60.5, 60.8, 60.9)]
    assert results.plateau_gain(flat) == pytest.approx(60.9 - 61) and results.plateaued(flat)
    assert results.plateaued(flat, points=-0.5) is False
    with pytest.raises(ValueError, match="at least 4 epochs"):
        results.plateau_gain(rising[:3])


def test_seeds_needed_follows_the_two_sample_formula():
    from statistics import NormalDist

    from mobileblocks_edu.train import results

    z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)
    assert results.seeds_needed(1.0, 1.0) == {"test": math.ceil(2 * z * z), "two_se": 9}  # 15.7 -> 16; 8 -> 9
    assert results.seeds_needed(3.0, 0.5) == {"test": 2, "two_se": 2}  # never fewer than two
    assert results.seeds_needed(0.0, 1.0)["test"] == math.inf
    with pytest.raises(ValueError, match="finite"):
        results.seeds_needed(1.0, float("nan"))


def test_every_ablation_row_has_a_plateau_experiment_and_claims_judge_them():
    from mobileblocks_edu.train import experiments, results

    for table in results.ABLATION_TABLES.values():
        for name, _ in table.values():
            e, p = experiments.get_experiment(name), experiments.get_experiment("plateau_" + name)
            assert (p.model, p.model_args, p.recipe) == (e.model, e.model_args, e.recipe)
            assert p.epochs == experiments.PLATEAU_EPOCHS > e.epochs
            assert p.options[-4:] == ("--subset", "book", "--loader", "tensor")
    claims = experiments.ablation_claims(setting="plateau")
    assert set(claims) == set(results.ABLATION_CLAIMS)
    assert all(c["better"].startswith("plateau_") for c in claims.values())


def test_jobs_run_seeds_side_by_side_and_report_the_first_failure(tmp_path, monkeypatch):
    import subprocess
    import threading

    calls, lock = [], threading.Lock()

    def fake_run(cmd, stdout, stderr):
        with lock:
            calls.append(cmd)
        stdout.write(f"ran {cmd}\n")
        return subprocess.CompletedProcess(cmd, 3 if "1" == cmd[cmd.index("--seed") + 1] else 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    exp = E.get_experiment("cifar10_emo_1m")
    assert E.run_in_parallel(exp, [0, 1, 2], 2, tmp_path / "runs", ["--threads", "1"]) == 3
    assert sorted(c[c.index("--seed") + 1] for c in calls) == ["0", "1", "2"]
    assert all(c[1:5] == ["-m", "mobileblocks_edu.experiments", "run", "cifar10_emo_1m"] for c in calls)
    assert all(c[-2:] == ["--threads", "1"] for c in calls)
    assert (tmp_path / "runs" / "cifar10_emo_1m_seed2.log").read_text().startswith("ran [")


def test_later_lessons_prefer_a_better_trained_run_of_the_same_model(tmp_path, monkeypatch):
    for name, better in E.PREFERRED.items():
        base = E.get_experiment(name)
        for b in better:
            e = E.get_experiment(b)
            assert (e.model, e.model_args, e.data) == (base.model, base.model_args, base.data)
    monkeypatch.setattr(E.env, "checkpoints_dir", lambda: tmp_path)
    model = E.build_model("cifar10_emo_1m")
    save_checkpoint(model.state_dict(), tmp_path / "plateau_cifar10_emo_1m_seed0.pt")
    got, trained, label = E.load_trained_or_fresh("cifar10_emo_1m")
    assert trained and label.startswith("plateau_cifar10_emo_1m")
    assert all(torch.equal(a, b) for a, b in zip(got.state_dict().values(), model.state_dict().values()))


def test_scaling_experiments_repeat_each_claims_rows_on_fewer_images():
    from mobileblocks_edu.train import results

    for key, names in E.SCALING_RUNS.items():
        if key != "baseline":
            table, better, worse = results.ABLATION_CLAIMS[key]
            assert names == tuple(results.ABLATION_TABLES[table][row][0] for row in (better, worse))
        for name in names:
            base = E.get_experiment(name)
            for n in E.SCALING_SIZES:
                e = E.get_experiment(f"scale{n}_{name}")
                assert e.group == "scaling" and e.options == base.options + ("--subset", str(n))
                assert replace(e, name=base.name, group=base.group, options=base.options, note=base.note) == base
    assert E.get_experiment("baseline_cifar10_resnet20").model == "resnet20_cifar"


def test_gap_has_each_rows_own_standard_error():
    from mobileblocks_edu.train import results

    assert results.gap([1.0, 3.0], [0.0, 0.0, 0.0]) == (2.0, math.sqrt(2.0 / 2))  # variance 2 over 2 seeds
    diff, se = results.gap([50.0], [48.0, 49.0])
    assert diff == pytest.approx(1.5) and math.isnan(se)
    with pytest.raises(ValueError, match="both sides"):
        results.gap([], [1.0])
    better = [{"history": [{"val_top1": a}, {"val_top1": b}]} for a, b in ((10, 20), (12, 24))]
    worse = [{"history": [{"val_top1": a}, {"val_top1": b}, {"val_top1": 30}]} for a, b in ((10, 20), (10, 22))]
    assert results.epoch_gaps(better, worse) == [results.gap([10, 12], [10, 10]), results.gap([20, 24], [20, 22])]


def test_scaling_gaps_orders_the_sizes_and_skips_missing_ones(monkeypatch):
    def run(top1, images):
        return {"final": {"top1": top1}, "train_images": images}

    fake = {"scale100_a": [run(30, 1000), run(32, 1000)], "scale100_b": [run(35, 1000), run(35, 1000)],
            "a": [run(50, 5438)] * 3, "b": [run(49, 5438)] * 3, "scale250_a": [run(40, 2500)], "base": [run(60, 5438)]}
    monkeypatch.setattr(E, "SCALING_RUNS", {"pair": ("a", "b"), "baseline": ("base",)})
    monkeypatch.setattr(E, "load_results", lambda name, results=None: fake.get(name, []))
    got = E.scaling_gaps()
    assert [r["per_class"] for r in got["pair"]] == [100, None]  # scale250_b has no runs
    small, book = got["pair"]
    assert small["images"] == 1000 and small["top1"] == [31, 35] and small["seeds"] == [2, 2]
    assert small["gap"] == -4 and small["se"] == pytest.approx(math.sqrt(2 / 2))
    assert book["gap"] == 1 and book["se"] == 0
    assert [r["top1"] for r in got["baseline"]] == [[60]] and "gap" not in got["baseline"][0]


def test_emos_table_on_the_whole_imagenette_keeps_each_rows_model_in_the_leaderboard_setting():
    from mobileblocks_edu.train import results

    board = E.get_experiment(E.LEADERBOARD_ROW)
    assert "--subset" in board.options and board.options[board.options.index("--subset") + 1] == "full"
    for row, (name, _) in results.EMO_TABLE5.items():
        e = E.get_experiment(E.ablation_experiment(name, "leaderboard"))
        assert e.model_args == E.get_experiment(name).model_args, row
        assert (e.model, e.data, e.epochs, e.options, e.seeds) == (board.model, board.data, board.epochs,
                                                                   board.options, board.seeds)
    assert all(E.ablation_experiment(n, "leaderboard") is None for n, _ in results.MOCOVIT_TABLE7.values())
    assert E.ablation_experiment("cifar10_emo_1m", "plateau") == "plateau_cifar10_emo_1m"
    with pytest.raises(ValueError, match="setting must be one of"):
        E.ablation_experiment("cifar10_emo_1m", "imagenet")
    claims = E.ablation_claims(setting="leaderboard")
    assert set(claims) == {k for k, (t, _, _) in results.ABLATION_CLAIMS.items() if t == "EMO"}
