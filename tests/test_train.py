"""The trainer: exact resume, determinism, checkpoints, metrics, recipes and the command line."""
import json
import math
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import mobileblocks_edu as mbe
from mobileblocks_edu import data, train
from mobileblocks_edu.blocks.layers import ConvNormAct, DropPath
from mobileblocks_edu.checkpoint import load_checkpoint, read_checkpoint
from mobileblocks_edu.train import cli, recipes, runinfo
from mobileblocks_edu.train.results import topk_correct

CLASSES = data.CIFAR10_CLASSES[:4]
COLORS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40]])


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    """CIFAR-10 layout with 4 classes of 32x32 PNGs whose colour gives the class away."""
    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 3)):
        for c, name in enumerate(CLASSES):
            d = root / "cifar10" / split / name
            d.mkdir(parents=True)
            for i in range(n):
                a = np.clip(COLORS[c] + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(a).save(d / f"{i:05d}.png")
    return root


class TinyNet(nn.Module):
    """Conv-BN-act, a residual block with drop path, dropout: every random part of a real model."""

    def __init__(self, num_classes=4):
        super().__init__()
        self.stem = ConvNormAct(3, 8, 3, 2)  # (B, 8, 16, 16)
        self.block = ConvNormAct(8, 8, 3, groups=8)
        self.drop_path = DropPath(0.2)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.drop_path(self.block(x))
        return self.head(self.drop(x.mean((2, 3))))


def _fit(root, out=None, seed=0, init_seed=0, workers=0, resume=False, on_step=None, on_epoch=None, **cfg):
    torch.manual_seed(init_seed)
    model = TinyNet()
    tl, vl = data.build_loaders("cifar10", root=root, download=False, batch_size=8, randaugment=True,
                                workers=workers, seed=seed)
    config = train.TrainConfig(**{"epochs": 2, "progress": False, "ema": True, "clip_grad": 5.0, "seed": seed, **cfg})
    return train.fit(model, tl, vl, config, out, resume=resume, on_step=on_step, on_epoch=on_epoch)


def _assert_same(a, b):
    for (ka, va), (kb, vb) in zip(a.items(), b.items()):
        assert ka == kb
        assert torch.equal(va, vb), ka


def _numbers(history):
    return [{k: v for k, v in h.items() if k not in ("epoch_time_s", "train_img_per_s", "eval_time_s")}
            for h in history]


def _opt_state(result_dir):
    return read_checkpoint(Path(result_dir) / "last.pt")["optimizer"]["state"]


class Stop(KeyboardInterrupt):
    pass


def test_resume_reproduces_the_uninterrupted_run_exactly(toy_root, tmp_path):
    straight = _fit(toy_root, tmp_path / "straight")

    # 1) stopped after epoch 1 (as by Ctrl-C between epochs), then resumed for epoch 2
    def stop_after_first(record):
        if record["epoch"] == 1:
            raise Stop

    with pytest.raises(KeyboardInterrupt):
        _fit(toy_root, tmp_path / "a", on_epoch=stop_after_first)
    assert read_checkpoint(tmp_path / "a" / "last.pt")["epoch"] == 1
    resumed = _fit(toy_root, tmp_path / "a", init_seed=7, resume=True)  # init does not matter

    # 2) stopped in the middle of epoch 2 while loading with 2 worker processes, resumed with none
    def stop_mid_epoch(info):
        if (info.epoch, info.step) == (2, 2):
            raise Stop

    with pytest.raises(KeyboardInterrupt):
        _fit(toy_root, tmp_path / "b", workers=2, on_step=stop_mid_epoch)
    last = read_checkpoint(tmp_path / "b" / "last.pt")  # usable: the state after epoch 1
    assert last["epoch"] == 1 and len(last["history"]) == 1
    assert json.loads((tmp_path / "b" / "result.json").read_text())["status"] == "interrupted"
    assert len(json.loads((tmp_path / "b" / "history.json").read_text())) == 1
    resumed_mid = _fit(toy_root, tmp_path / "b", resume=True)

    for r in (resumed, resumed_mid):
        _assert_same(straight.model.state_dict(), r.model.state_dict())
        _assert_same(straight.ema.state_dict(), r.ema.state_dict())
        assert _numbers(r.history) == _numbers(straight.history)
        assert r.best["epoch"] == straight.best["epoch"]
    for d in ("a", "b"):
        for k, st in _opt_state(tmp_path / "straight").items():
            _assert_same(st, _opt_state(tmp_path / d)[k])
    assert len(json.loads((tmp_path / "b" / "result.json").read_text())["commands"]) == 0


def test_fixed_seed_identical_other_seed_different(toy_root):
    a, b = _fit(toy_root, epochs=1), _fit(toy_root, epochs=1)
    _assert_same(a.model.state_dict(), b.model.state_dict())
    assert _numbers(a.history) == _numbers(b.history)
    c = _fit(toy_root, epochs=1, seed=1)  # same initial weights, other data order / augmentation / dropout
    diff = [k for k, v in a.model.state_dict().items() if not torch.equal(v, c.model.state_dict()[k])]
    assert "head.weight" in diff and "stem.conv.weight" in diff


@pytest.mark.parametrize("recipe, state_keys",
                         [("emo", {"step", "exp_avg", "exp_avg_sq"}), ("mocovit", {"momentum_buffer"})])
def test_checkpoints_load_with_weights_only(toy_root, tmp_path, recipe, state_keys):
    res = _fit(toy_root, tmp_path, epochs=2, recipe=recipe)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "history.json", "last.pt", "result.json"]
    ck = torch.load(tmp_path / "last.pt", weights_only=True)  # tensors and plain containers only
    assert ck["epoch"] == 2 and ck["config"]["seed"] == 0 and ck["rng"]["torch"].dtype == torch.uint8
    assert set(ck["optimizer"]["state"][0]) == state_keys
    assert ck["scheduler"]["last_epoch"] == 2 * 4 and ck["scheduler"]["lr_lambdas"][0]["total_steps"] == 8
    runinfo.set_rng_state(ck["rng"])  # every saved random state can be restored
    assert torch.equal(torch.get_rng_state(), ck["rng"]["torch"])
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] == res.best["epoch"]
    # the usual loader finds the weights the run evaluated in a training checkpoint (the EMA's),
    # and the raw weights on request
    _assert_same(load_checkpoint(TinyNet(), tmp_path / "last.pt").state_dict(), res.ema.module.state_dict())
    _assert_same(load_checkpoint(TinyNet(), tmp_path / "last.pt", ema=False).state_dict(), res.model.state_dict())
    # exported weights: the EMA's by default, optionally in half precision
    train.export_weights(tmp_path / "last.pt", tmp_path / "w.pt")
    _assert_same(load_checkpoint(TinyNet(), tmp_path / "w.pt").state_dict(), res.ema.module.state_dict())
    train.export_weights(tmp_path / "last.pt", tmp_path / "h.pt", ema=False, half=True)
    half = torch.load(tmp_path / "h.pt", weights_only=True)
    assert half["head.weight"].dtype == torch.float16
    torch.testing.assert_close(half["head.weight"].float(), res.model.head.weight.detach(), atol=1e-3, rtol=1e-3)


def test_history_and_result_files(toy_root, tmp_path):
    res = _fit(toy_root, tmp_path, epochs=2, ema=False)
    hist = json.loads((tmp_path / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    assert set(hist[0]) >= {"lr", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "train_img_per_s"}
    r = json.loads((tmp_path / "result.json").read_text())
    assert r["status"] == "done" and r["seed"] == 0 and r["epochs_done"] == 2
    assert r["params"] == mbe.count_params(res.model) and r["input_size"] == [3, 32, 32]
    assert r["macs"] == mbe.count_flops(TinyNet(), (1, 3, 32, 32), "macs") > 0
    assert r["code_version"]["package"] == mbe.__version__ and "torch threads" in r["machine"]
    assert r["wall_time_s"] > 0 and r["classes"] == list(CLASSES)
    assert r["final"]["top1"] == hist[-1]["val_top1"] and len(r["final"]["confusion"]) == 4
    assert r["best"]["val_top1"] == max(h["val_top1"] for h in hist)


def test_learns_a_toy_problem(toy_root):
    """Classes given away by colour: the loop must get them all right."""
    res = _fit(toy_root, epochs=12, recipe="mocovit", lr=0.2, ema=False)
    assert res.final.top1 == 100.0 and res.history[-1]["train_loss"] < res.history[0]["train_loss"]


def test_evaluate_on_known_logits():
    logits = torch.tensor([
        [9., 1, 2, 3, 4, 5],  # true 0: top-1
        [0., 5, 4, 3, 2, 1],  # true 0: ranked 6th, missed by top-5
        [1., 0, 5, 4, 3, 2],  # true 0: ranked 5th, in top-5
        [0., 1, 2, 3, 4, 5],  # true 5: top-1
        [0., 1, 2, 9, 4, 5],  # true 4: ranked 2nd
    ])
    y = torch.tensor([0, 0, 0, 5, 4])
    loader = DataLoader(TensorDataset(logits, y), batch_size=2)
    ev = train.evaluate(nn.Identity(), loader, num_classes=6)
    assert ev.n == 5 and ev.top1 == 40.0 and ev.top5 == 80.0
    assert math.isclose(ev.loss, nn.functional.cross_entropy(logits, y).item(), rel_tol=1e-6)
    expected = torch.zeros(6, 6, dtype=torch.long)
    for t, p in [(0, 0), (0, 1), (0, 2), (5, 5), (4, 3)]:
        expected[t, p] += 1
    assert torch.equal(ev.confusion, expected)
    assert ev.per_class == [100 / 3, None, None, None, 0.0, 100.0]
    assert json.loads(json.dumps(ev.to_dict()))["confusion"][0] == [1, 1, 1, 0, 0, 0]
    assert topk_correct(logits[:2, :3], y[:2], 5) == 2  # k is capped at the number of classes


def test_schedule_and_recipes():
    f = recipes.WarmupCosine(4, 12)
    assert [f(t) for t in (0, 3, 4)] == [0.25, 1.0, 1.0]
    assert math.isclose(f(8), 0.5) and math.isclose(f(12), 0.0, abs_tol=1e-12)
    assert math.isclose(recipes.WarmupCosine(0, 10, 0.1)(10), 0.1)
    emo = train.TrainConfig(epochs=30).resolved(128)
    assert (emo.opt, emo.weight_decay, emo.label_smoothing) == ("adamw", 0.05, 0.1)
    assert math.isclose(emo.lr, 6e-3 * 128 / 2048) and math.isclose(emo.warmup_epochs, 2.0)
    sgd = train.TrainConfig(epochs=36, recipe="ghostnet").resolved(256)
    assert (sgd.opt, sgd.weight_decay, sgd.label_smoothing) == ("sgd", 4e-5, 0.0)
    assert math.isclose(sgd.lr, 0.125) and math.isclose(sgd.warmup_epochs, 0.5)
    assert train.TrainConfig(lr=0.01, opt="sgd").resolved(64).lr == 0.01
    groups = recipes.param_groups(TinyNet(), 0.05)
    assert [len(g["params"]) for g in groups] == [3, 5]  # 2 conv kernels + linear weight; biases and BN


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs must be a positive number"),
    ({"opt": "adam"}, r"opt must be one of \('adamw', 'sgd'\), got 'adam'"),
    ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\), got 1.0"),
    ({"ema_decay": 1.0}, r"ema_decay must be in \(0, 1\)"),
    ({"amp": "fp8"}, "amp must be"),
    ({"recipe": "resnet"}, "recipe must be one of"),
])
def test_bad_config_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train.TrainConfig(**kwargs).resolved(32)


def test_mixed_precision_is_cuda_only(toy_root):
    assert recipes.amp_dtype("auto", torch.device("cpu")) is None
    with pytest.raises(ValueError, match="amp='bf16' needs a CUDA device"):
        _fit(toy_root, epochs=1, amp="bf16", device="cpu")


def test_no_silent_overwrite_and_checked_resume(toy_root, tmp_path):
    _fit(toy_root, tmp_path, epochs=1)
    with pytest.raises(FileExistsError, match="last.pt exists: resume that run"):
        _fit(toy_root, tmp_path, epochs=1)
    with pytest.raises(ValueError, match=r"cannot resume.*\n  lr: checkpoint .*, now 0.5"):
        _fit(toy_root, tmp_path, epochs=1, lr=0.5, resume=True)
    torch.set_num_threads(2)
    try:
        with pytest.warns(UserWarning, match="the run used 1 CPU threads, this process 2"):
            _fit(toy_root, tmp_path, epochs=1, resume=True)
    finally:
        torch.set_num_threads(1)


# ------------------------------------------------------------------ the command line
def test_cli_help(capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m mobileblocks_edu.train")
    for flag in ("--model", "--data", "--epochs", "--out", "--resume", "--seed", "--subset", "--batch-size", "--lr",
                 "--opt", "--wd", "--warmup-epochs", "--label-smoothing", "--ema", "--img-size", "--workers",
                 "--threads", "--download", "--offline"):
        assert flag in out, flag


def test_cli_defaults_are_the_config_defaults():
    """The command line is built from TrainConfig's fields: the same defaults, allowed values and checks."""
    from dataclasses import MISSING, fields

    opts = train.options(["--model", "emo_1m_cifar"])
    config = train.TrainConfig()
    for f in fields(train.TrainConfig):
        assert opts[cli.option_name(f.name)] == getattr(config, f.name) == f.default, f.name
    for f in fields(cli.RunOptions):
        default = f.default if f.default is not MISSING else f.default_factory()
        assert opts[f.name] == default or f.name in ("model", "out"), f.name
    assert cli.train_config(opts) == config and config.channels_last is True
    parser = cli.build_parser()
    assert all(a.default is None for a in parser._actions if a.dest not in ("help", "resume"))  # None: not given
    choices = {a.dest: a.choices for a in parser._actions if a.choices}
    assert choices["amp"] == recipes.AMP_MODES and set(choices["recipe"]) == {"emo", "mocovit", "ghostnet"}
    assert train.options(["--model", "emo_1m_cifar", "--wd", "0.1"])["wd"] == 0.1  # weight_decay's flag


CLI_RUN = ["--model", "mobilenetv2_100_cifar", "--data", "cifar10", "--batch-size", "8", "--subset", "2",
           "--img-size", "16", "--offline", "--no-progress"]


def test_cli_run_ctrl_c_and_exact_resume(toy_root, tmp_path):
    common = CLI_RUN + ["--data-dir", str(toy_root), "--epochs", "4"]
    # straight, in this process
    assert train.main(common + ["--out", str(tmp_path / "straight")]) == 0
    r = json.loads((tmp_path / "straight" / "result.json").read_text())
    assert r["command"].startswith("python -m mobileblocks_edu.train --model mobilenetv2_100_cifar")
    assert r["model"] == "mobilenetv2_100_cifar" and r["data"]["subset"] == 2 and r["data"]["img_size"] == 16
    assert r["params"] == mbe.count_params(mbe.create_model("mobilenetv2_100_cifar")) and r["macs"] > 0
    assert r["config"]["lr"] == 6e-3 * 8 / 2048 and r["data"]["randaugment"] is True  # EMO's recipe, scaled
    assert r["config"]["channels_last"] is True  # the default of TrainConfig and of the command line
    assert r["data"]["source"] == "cifar10/train"  # relative to the data directory

    # the same run in a child process, stopped by a real Ctrl-C (SIGINT) once epoch 1 is saved; the
    # child pauses after each epoch's files are written, so that the signal lands before the run ends
    out = tmp_path / "cut"
    child = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with Ctrl-C ignored\n"
        "from mobileblocks_edu import train\n"
        "from mobileblocks_edu.train import loop\n"
        "write = loop.write_json\n"
        "def paused(obj, path):\n"
        "    write(obj, path)\n"
        "    if isinstance(obj, dict) and obj.get('status') == 'running':\n"
        "        time.sleep(2)\n"
        "loop.write_json = paused\n"
        "sys.exit(train.main(sys.argv[1:]))\n"
    )
    p = subprocess.Popen([sys.executable, "-c", child, *common, "--out", str(out), "--threads", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not (out / "last.pt").exists() and p.poll() is None and time.time() - t0 < 60:
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    out_text, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "--resume" in err, (err, out_text)
    saved = read_checkpoint(out / "last.pt")["epoch"]
    assert 1 <= saved < 4
    assert json.loads((out / "result.json").read_text())["status"] == "interrupted"

    # resume with only --out: the run's own settings come from its checkpoint
    with pytest.raises(SystemExit):
        train.main(["--out", str(out), "--resume", "--lr", "0.1"])  # a different recipe is refused
    assert train.main(["--out", str(out), "--resume", "--no-progress"]) == 0
    _assert_same(read_checkpoint(out / "last.pt")["model"], read_checkpoint(tmp_path / "straight" / "last.pt")["model"])
    r = json.loads((out / "result.json").read_text())
    assert r["status"] == "done" and len(r["commands"]) == 2 and r["commands"][1].endswith("--resume --no-progress")
    assert r["command"] == r["commands"][0] and "--epochs 4" in r["command"]


def test_cli_errors(toy_root, tmp_path, capsys):
    with pytest.raises(SystemExit):
        train.main(["--model", "mobilenetv2_100_cifr"])
    assert "did you mean 'mobilenetv2_100_cifar'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["--out", str(tmp_path / "none"), "--resume"])
    assert "no checkpoint at" in capsys.readouterr().err
    rc = train.main(CLI_RUN + ["--data-dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")])
    assert rc == 2 and "CIFAR-10 ('train' split) was not found" in capsys.readouterr().err


# ------------------------------------------------------------------ the named experiments
def test_every_experiment_is_a_valid_command():
    from mobileblocks_edu.train import experiments as E

    parser = cli.build_parser()
    for e in E.list_experiments():
        argv = e.argv(0, "runs")
        assert shlex.split(e.command(0))[3:] == argv
        opts = cli.resolve_options(parser, parser.parse_args(argv))
        assert (opts["model"], opts["data"], opts["epochs"], opts["out"]) == \
            (e.model, e.data, e.epochs, f"runs/{e.name}_seed0")
        kwargs = cli.parse_model_args(opts["model_arg"])
        assert kwargs == dict(e.model_args)
        mbe.create_model(e.model, **kwargs)  # registered, and the factory takes the arguments
    assert len({e.name for e in E.list_experiments()}) == len(E.EXPERIMENTS)
    with pytest.raises(ValueError, match="did you mean 'cifar10_emo_1m'"):
        E.get_experiment("cifar10_emo1m")


def test_experiment_run_resume_collect_summarize(toy_root, tmp_path, monkeypatch, capsys):
    from mobileblocks_edu.train import experiments as E

    exp = E.Experiment("toy", "mobilenetv2_100_cifar", epochs=2, seeds=(0, 1), batch_size=8,
                       options=("--subset", "2", "--img-size", "16", "--data-dir", str(toy_root), "--offline",
                                "--no-progress"))
    monkeypatch.setitem(E.EXPERIMENTS, "toy", exp)
    runs = tmp_path / "runs"
    assert E.run_status(exp, 0, runs) == "missing"
    assert E.run_experiment("toy", 0, runs) == 0
    assert E.run_status(exp, 0, runs) == "done"
    assert E.run_experiment("toy", 0, runs) == 0 and "done already" in capsys.readouterr().out

    def stop(record):
        raise Stop

    with pytest.raises(KeyboardInterrupt):  # seed 1 stopped after its first epoch ...
        train.run(train.options(exp.argv(1, runs)), on_epoch=stop)
    assert E.run_status(exp, 1, runs) == "partial"
    assert E.run_experiment("toy", 1, runs) == 0  # ... and resumed by run_experiment
    assert E.run_status(exp, 1, runs) == "done"

    written = E.collect("toy", runs, tmp_path / "results", tmp_path / "ckpt")
    assert sorted(p.name for p in written) == ["toy_seed0.json", "toy_seed0.pt", "toy_seed1.json", "toy_seed1.pt"]
    load_checkpoint(mbe.create_model("mobilenetv2_100_cifar"), tmp_path / "ckpt" / "toy_seed0.pt")
    s = E.summarize("toy", tmp_path / "results")
    finals = [json.loads((tmp_path / "results" / f"toy_seed{i}.json").read_text())["final"]["top1"] for i in (0, 1)]
    assert s["seeds"] == [0, 1] and s["top1"] == finals
    assert math.isclose(s["mean"], sum(finals) / 2) and math.isclose(s["std"], float(np.std(finals, ddof=1)))
    assert len(E.load_results("toy", tmp_path / "results")[0]["history"]) == 2


def test_train_with_progress_estimates_the_time_left_and_resumes(toy_root, tmp_path, monkeypatch, capsys):
    from mobileblocks_edu.train import experiments as E

    exp = E.Experiment("toy_eta", "mobilenetv2_100_cifar", epochs=3, seeds=(0,), batch_size=8,
                       options=("--subset", "2", "--img-size", "16", "--data-dir", str(toy_root), "--offline",
                                "--no-progress"))
    monkeypatch.setitem(E.EXPERIMENTS, "toy_eta", exp)
    runs = tmp_path / "runs"

    def stop(record):
        if record["epoch"] == 1:
            raise Stop

    with pytest.raises(KeyboardInterrupt):
        train.run(train.options(exp.argv(0, runs)), on_epoch=stop)
    capsys.readouterr()
    result = E.train_with_progress("toy_eta", 0, runs)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 2/3", "epoch 3/3"]  # resumed after epoch 1
    assert all("min per epoch, about" in line and "min to go" in line for line in lines)
    assert result["status"] == "done" and result["epochs_done"] == 3
    assert E.train_with_progress("toy_eta", 0, runs)["status"] == "done"
    assert "done already" in capsys.readouterr().out
