"""Bad input and misuse give a clear error (naming the argument or file and what is allowed)
before any training time is spent, or behave correctly: one test per kind of mistake."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

import mobileblocks_edu as mbe
from mobileblocks_edu import checkpoint, data, env, train
from mobileblocks_edu.analysis import bench, cam, erf, receptive
from mobileblocks_edu.analysis.complexity import count_flops
from mobileblocks_edu.blocks.irb import InvertedResidual
from mobileblocks_edu.blocks.layers import ConvNormAct
from mobileblocks_edu.checkpoint import CheckpointError, WriteError, load_checkpoint, read_checkpoint, save_checkpoint
from mobileblocks_edu.train import experiments as E
from mobileblocks_edu.train import loop, recipes, runinfo
from mobileblocks_edu.train.results import confusion_matrix, topk_correct

shutil_usage = type(shutil.disk_usage("."))

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread


def _copy(root: Path, dest: Path, drop=(), rename=None, extra=None, splits=("train",)) -> Path:
    """A copy of a CIFAR folder made of symbolic links, with class folders dropped, renamed or added."""
    rename = rename or {}
    for split in ("train", "test"):
        (dest / "cifar10" / split).mkdir(parents=True)
        for c in sorted((root / "cifar10" / split).iterdir()):
            name = c.name
            if split in splits and name in drop:
                continue
            if split in splits:
                name = rename.get(name, name)
            (dest / "cifar10" / split / name).symlink_to(c)
        if extra:  # a class folder more, in both splits
            (dest / "cifar10" / split / extra).symlink_to(root / "cifar10" / split / "cat")
    return dest


RUN = ["--model", "ghostnet_050_cifar", "--batch-size", "4", "--subset", "1", "--img-size", "16", "--offline",
       "--no-progress", "--threads", "1", "--epochs", "1"]


def _no_training(monkeypatch):
    """Make any training step fail loudly: the checks must come first."""
    def boom(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(loop, "train_one_epoch", boom)


# ---------------------------------------------------------------- 1. class lists of every split
@pytest.mark.parametrize("change, needle", [
    (dict(drop=("airplane",)), "only in the evaluation split"),
    (dict(rename={"cat": "Cat"}), "'Cat'"),
])
def test_train_and_test_classes_must_agree(cifar, tmp_path, monkeypatch, capsys, change, needle):
    bad = _copy(cifar, tmp_path / "copy", **change)
    with pytest.raises(ValueError, match="class lists of the training split") as e:
        data.build_loaders("cifar10", root=bad, download=False, batch_size=4)
    assert needle in str(e.value)
    _no_training(monkeypatch)
    assert train.main(RUN + ["--data-dir", str(bad), "--out", str(tmp_path / "R")]) == 2
    assert "class lists" in capsys.readouterr().err
    assert not (tmp_path / "R" / "last.pt").exists()


def test_extra_class_folder_is_refused_before_training(cifar, tmp_path, monkeypatch, capsys):
    bad = _copy(cifar, tmp_path / "copy", extra="zebra", splits=("train", "test"))
    _no_training(monkeypatch)
    assert train.main(RUN + ["--data-dir", str(bad), "--out", str(tmp_path / "R")]) == 2
    assert "the data has 11 classes but the model has 10 outputs" in capsys.readouterr().err


def test_resume_with_other_classes_is_refused(cifar, tmp_path, capsys):
    out = tmp_path / "R"

    def stop(record):
        raise KeyboardInterrupt

    opts = train.options(RUN[:-1] + ["2", "--data-dir", str(cifar), "--out", str(out)])
    with pytest.raises(KeyboardInterrupt):
        train.run(opts, on_epoch=stop)
    other = _copy(cifar, tmp_path / "copy", rename={"cat": "Cat"}, splits=("train", "test"))
    assert train.main(["--out", str(out), "--resume", "--data-dir", str(other)]) == 2
    err = capsys.readouterr().err
    assert "checkpoint" in err and "'Cat'" in err and "class lists" in err
    assert read_checkpoint(out / "last.pt")["epoch"] == 1  # nothing trained


# ---------------------------------------------------------------- 2. one run per folder
def test_two_runs_cannot_share_an_output_folder(cifar, tmp_path, monkeypatch, capsys):
    out = tmp_path / "R"
    out.mkdir()
    _no_training(monkeypatch)
    with runinfo.RunLock(out):  # as if another process were training there
        assert train.main(RUN + ["--data-dir", str(cifar), "--out", str(out)]) == 2
        assert "is in use by another run (process" in capsys.readouterr().err
        with pytest.raises(runinfo.RunInUseError, match="in use by another run"):
            runinfo.RunLock(out).acquire()
    assert not (out / ".lock").exists()  # released and removed
    runinfo.RunLock(out).acquire().release()


def test_resume_while_the_run_trains_is_refused(cifar, tmp_path, capsys):
    out = tmp_path / "R"
    child = (
        "import sys, time\nfrom mobileblocks_edu import train\nfrom mobileblocks_edu.train import loop\n"
        "write = loop.write_json\n"
        "def paused(obj, path):\n    write(obj, path)\n"
        "    if isinstance(obj, dict) and obj.get('status') == 'running':\n        time.sleep(3)\n"
        "loop.write_json = paused\nsys.exit(train.main(sys.argv[1:]))\n"
    )
    argv = RUN[:-1] + ["2", "--data-dir", str(cifar), "--out", str(out)]
    p = subprocess.Popen([sys.executable, "-c", child, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        t0 = time.time()
        while not (out / "result.json").exists() and p.poll() is None and time.time() - t0 < 60:
            time.sleep(0.05)
        assert p.poll() is None, p.communicate()
        assert train.main(["--out", str(out), "--resume"]) == 2  # the run is still going
        assert f"{out} is in use by another run (process {p.pid})" in capsys.readouterr().err
    finally:
        _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert read_checkpoint(out / "last.pt")["epoch"] == 2


def test_a_killed_runs_lock_does_not_block(tmp_path):
    out = tmp_path / "R"
    out.mkdir()
    child = ("import sys, time\nfrom mobileblocks_edu.train.runinfo import RunLock\n"
             "RunLock(sys.argv[1]).acquire()\nprint('locked', flush=True)\ntime.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", child, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(runinfo.RunInUseError, match=f"process {p.pid}"):
            runinfo.RunLock(out).acquire()
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    assert (out / ".lock").exists()  # the stale file stays, unlocked
    lock = runinfo.RunLock(out).acquire()
    lock.release()


# ---------------------------------------------------------------- 3. the run folder's identity
def test_experiments_check_what_the_run_folder_holds(cifar, tmp_path, monkeypatch, capsys):
    how = ("--data-dir", str(cifar), "--offline", "--no-progress", "--threads", "1")
    exp = E.Experiment("toy", "ghostnet_050_cifar", epochs=1, seeds=(0,), batch_size=4,
                       options=("--subset", "1", "--img-size", "16") + how)
    monkeypatch.setitem(E.EXPERIMENTS, "toy", exp)
    runs = tmp_path / "runs"
    assert E.run_experiment("toy", 0, runs) == 0 and E.run_status(exp, 0, runs) == "done"
    # the same folder now claimed by an experiment of another model and more epochs
    other = replace(exp, model="mobilenetv2_100_cifar", epochs=8)
    monkeypatch.setitem(E.EXPERIMENTS, "toy", other)
    with pytest.raises(E.RunMismatchError, match="holds another run than experiment toy") as e:
        E.run_status(other, 0, runs)
    assert "model: the folder's run has 'ghostnet_050_cifar', toy needs 'mobilenetv2_100_cifar'" in str(e.value)
    assert "epochs: the folder's run has 1, toy needs 8" in str(e.value)
    with pytest.raises(E.RunMismatchError):
        E.run_experiment("toy", 0, runs)
    with pytest.raises(E.RunMismatchError):
        E.collect("toy", runs, tmp_path / "results")
    assert not (tmp_path / "results").exists()
    with pytest.raises(SystemExit) as ex:
        E.main(["collect", "toy", "--runs", str(runs)])
    assert ex.value.code == 2 and "holds another run" in capsys.readouterr().err
    # options that change what a run is may not be slipped in as extra options
    monkeypatch.setitem(E.EXPERIMENTS, "toy", exp)
    with pytest.raises(ValueError, match="not what it is; got --epochs"):
        E.run_experiment("toy", 0, tmp_path / "runs2", ["--epochs", "1"])


# ---------------------------------------------------------------- 4. an unusable --out
def test_unusable_output_folder_fails_before_training(cifar, tmp_path, monkeypatch, capsys):
    _no_training(monkeypatch)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert train.main(RUN + ["--data-dir", str(cifar), "--out", str(a_file)]) == 2
    assert f"out_dir {a_file} is a file, not a folder" in capsys.readouterr().err
    assert train.main(RUN + ["--data-dir", str(cifar), "--out", str(a_file / "sub")]) == 2
    assert f"out_dir {a_file / 'sub'} cannot be created" in capsys.readouterr().err
    (tmp_path / "R" / "last.pt").mkdir(parents=True)
    assert train.main(RUN + ["--data-dir", str(cifar), "--out", str(tmp_path / "R")]) == 2
    assert "last.pt is a folder" in capsys.readouterr().err


# ---------------------------------------------------------------- 5. strict=False
def test_strict_false_refuses_to_load_nothing(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    sd = {f"model.{k}": v for k, v in model.state_dict().items()}
    save_checkpoint({"weights": sd}, tmp_path / "p.pt")
    with pytest.raises(CheckpointError, match=r"shares no key with Sequential .*start with 'model\.'"):
        load_checkpoint(model, tmp_path / "p.pt", key="weights", strict=False)
    part = {k: v + 1 for k, v in model.state_dict().items() if k.startswith("0.")}
    save_checkpoint(part, tmp_path / "part.pt")
    with pytest.warns(UserWarning, match="matched 2 of the model's 4 keys"):
        load_checkpoint(model, tmp_path / "part.pt", strict=False)
    assert torch.equal(model[0].bias, part["0.bias"])
    save_checkpoint({"0.weight": torch.zeros(3, 3)}, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"0.weight: checkpoint \(3, 3\) vs model \(4, 4\)"):
        load_checkpoint(model, tmp_path / "shape.pt", strict=False)


# ---------------------------------------------------------------- 6. Grad-CAM inputs and targets
@pytest.mark.parametrize("name, size, least", [("emo_1m_cifar", 8, 32), ("ghostnet_050", 32, 64)])
def test_grad_cam_refuses_inputs_too_small(name, size, least):
    model = mbe.create_model(name, num_classes=10)
    with pytest.raises(ValueError, match=rf"x of {size}x{size} is too small for Grad-CAM on {name}: .*1x1.*"
                                         rf"at least {least}x{least}"):
        cam.grad_cam(model, torch.randn(1, 3, size, size))


def test_grad_cam_targets_must_be_classes():
    model = mbe.create_model("emo_1m_cifar").eval()
    x = torch.randn(2, 3, 32, 32)
    for bad in ([-1, 0], [0, 10]):
        with pytest.raises(ValueError, match=r"targets must be class indices in \[0, 9\]"):
            cam.grad_cam(model, x, targets=bad)
    res = cam.grad_cam(model, x, targets=[3, 9])
    assert res.targets == [3, 9] and res.cams.shape == (2, 32, 32)


# ---------------------------------------------------------------- 7. receptive fields in eval mode
def test_receptive_field_tools_measure_in_eval_mode():
    block = InvertedResidual(8, 8)  # new modules are in train mode
    block.conv_dw.norm.eval()  # one frozen BatchNorm: its own mode must come back too
    dep = receptive.dependency(block, 8, 5)
    assert int(dep.sum()) == 169  # 3x3 reach of each pixel, clipped at the border (not 625: batch statistics)
    assert block.training and not block.conv_dw.norm.training
    x = torch.randn(4, 8, 9, 9)
    erf_train = erf.effective_receptive_field(block, x)
    erf_eval = erf.effective_receptive_field(block.eval(), x)
    torch.testing.assert_close(erf_train, erf_eval)
    with pytest.raises(ValueError, match=r"position must be \(row, column\) with 0 <= row < 9"):
        erf.effective_receptive_field(block, x, position=(-1, -1))


# ---------------------------------------------------------------- 8. the committed benchmark
def test_bench_without_output_keeps_the_committed_report(tmp_path, monkeypatch):
    committed = env.results_dir() / "bench_cpu.json"
    before = committed.read_bytes() if committed.is_file() else None
    assert "lessons" not in bench.default_output().parts
    monkeypatch.setattr(bench, "run", lambda *a, **k: {"groups": []})
    monkeypatch.chdir(tmp_path)
    assert bench.main(["--models", "emo_1m", "--settings", "32:1", "--repeats", "1"]) == 0
    assert json.loads((tmp_path / "runs" / "bench_cpu.json").read_text())["groups"] == []
    if before is not None:
        assert committed.read_bytes() == before
    with pytest.raises(SystemExit):
        bench.main(["--models", "emo_1n"])


# ---------------------------------------------------------------- 9. accepted silently before
def test_model_arguments_are_checked():
    for name in ("emo_1m_cifar", "mobilenetv2_100_cifar", "ghostnet_050_cifar", "mocovit_050_cifar"):
        with pytest.raises(ValueError, match=r"num_classes must be an integer >= 0 \(0: no classifier\), got -1"):
            mbe.create_model(name, num_classes=-1)
    for name in ("emo_1m_cifar", "mobilenetv2_100_cifar", "ghostnet_050_cifar"):
        for rate in (-0.1, 1.5):
            with pytest.raises(ValueError, match=rf"drop_path_rate must be a number in \[0, 1\), got {rate}"):
                mbe.create_model(name, drop_path_rate=rate)
    with pytest.raises(ValueError, match="kernel_size=8 is even"):
        ConvNormAct(8, 8, 8)
    assert ConvNormAct(8, 8, 2, 2, padding=0)(torch.randn(1, 8, 8, 8)).shape[-1] == 4  # explicit padding is fine
    with pytest.raises(ValueError, match="kernel_size=4 is even"):
        InvertedResidual(8, 8, dw_kernel_size=4)
    model = mbe.create_model("ghostnet_050_cifar")
    with pytest.raises(ValueError, match="num_classes must be an integer >= 0"):
        model.reset_classifier(-1)


@pytest.mark.parametrize("flag, value, message", [
    ("--img-size", "0", "argument --img-size: must be an integer >= 8, got '0'"),
    ("--threads", "0", "argument --threads: must be an integer >= 1, got '0'"),
    ("--threads", "-2", "argument --threads: must be an integer >= 1, got '-2'"),
    ("--subset", "0", "argument --subset: must be an integer >= 1 (images per class) or one of book, full, got '0'"),
    ("--lr", "inf", "argument --lr: must be a finite number in (0, inf), got 'inf'"),
    ("--lr", "nan", "argument --lr: must be a finite number in (0, inf), got 'nan'"),
    ("--drop-path", "1.5", "argument --drop-path: must be a finite number in [0, 1), got '1.5'"),
    ("--label-smoothing", "1", "argument --label-smoothing: must be a finite number in [0, 1), got '1'"),
    ("--device", "gpu0", "argument --device: device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got 'gpu0'"),
])
def test_cli_values_are_checked_when_parsed(flag, value, message, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--model", "ghostnet_050_cifar", flag, value])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_cli_model_arg_names_what_the_model_takes(cifar, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data, "build_loaders", lambda *a, **k: pytest.fail("data read before the model was checked"))
    assert train.main(RUN + ["--data-dir", str(cifar), "--out", str(tmp_path / "R"), "--model-arg", "foo=1"]) == 2
    err = capsys.readouterr().err
    assert "ghostnet_050_cifar does not take the argument(s) ['foo']; it takes:" in err and "drop_path_rate" in err


def test_config_values_are_checked():
    with pytest.raises(ValueError, match=r"warmup_epochs=5 is longer than the run \(epochs=2\)"):
        train.TrainConfig(epochs=2, warmup_epochs=5).resolved(8)
    with pytest.raises(ValueError, match="lr must be a finite number, got inf"):
        train.TrainConfig(lr=float("inf")).resolved(8)
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got 'gpu0'"):
        train.TrainConfig(device="gpu0").resolved(8)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\)"):
        train.TrainConfig(momentum=1.0).resolved(8)
    with pytest.raises(ValueError, match="ema must be True or False, got 'no'"):
        train.TrainConfig(ema="no").resolved(8)  # a non-empty string would count as true
    with pytest.raises(ValueError, match=r"channels_last must be True or False, got 'False' \(a string"):
        train.TrainConfig(channels_last="False").resolved(8)


def test_count_flops_keeps_a_frozen_batchnorm_frozen():
    model = nn.Sequential(ConvNormAct(3, 8, 3), ConvNormAct(8, 8, 3))
    model[0].norm.eval()  # frozen statistics
    count_flops(model, (1, 3, 8, 8))
    assert model.training and model[1].norm.training and not model[0].norm.training


# ---------------------------------------------------------------- 10. raw or misleading errors
def test_full_disk_names_the_file_and_the_disk(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"

    def full(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: shutil_usage(100 * 2**20, 99 * 2**20, 2**20))
    with pytest.raises(WriteError, match=rf"cannot write {path}: the disk is full \(1.0 MiB free in {tmp_path}\)"):
        save_checkpoint({"a": torch.zeros(1)}, path)

    def enospc(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError, match="the disk is full") as e:
        checkpoint.atomic_write(tmp_path / "result.json", enospc, binary=False)
    assert e.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary file left behind


def test_too_little_disk_space_is_found_before_training(cifar, tmp_path, monkeypatch, capsys):
    _no_training(monkeypatch)
    monkeypatch.setattr(runinfo.shutil, "disk_usage", lambda p: shutil_usage(100 * 2**20, 99 * 2**20, 2**20))
    assert train.main(RUN + ["--data-dir", str(cifar), "--out", str(tmp_path / "R")]) == 2
    err = capsys.readouterr().err
    assert f"out_dir {tmp_path / 'R'} has 1.0 MiB free, but the run's checkpoints need about" in err


def test_empty_batch_is_refused_at_the_model():
    with pytest.raises(ValueError, match=r"EMO expects images of shape \(B, 3, H, W\) with B >= 1, got \(0, 3, 32, "):
        mbe.create_model("emo_1m_cifar")(torch.zeros(0, 3, 32, 32))


def test_dataset_arguments_are_named(cifar):
    with pytest.raises(ValueError, match=r"subset \(images per class\) must be a positive number, got 0"):
        data.load_dataset("cifar10", root=cifar, download=False, subset=0)
    with pytest.raises(ValueError, match="download must be True, False or None"):
        data.load_dataset("cifar10", root=cifar, download="no")
    with pytest.raises(ValueError, match="img_size must be a positive number, got 0"):
        data.build_loaders("cifar10", root=cifar, download=False, img_size=0)


# ---------------------------------------------------------------- 11. leftovers
def test_stale_temporary_files_are_removed_and_result_matches_last_pt(cifar, tmp_path, monkeypatch):
    out = tmp_path / "R"
    out.mkdir()
    stale = out / ".last.pt.k1ll3d.tmp"
    stale.write_bytes(b"")  # as left by a save killed with SIGKILL
    save = loop.save_checkpoint

    def cut(obj, path):  # Ctrl-C while last.pt of epoch 2 is being written (best.pt is already new)
        if Path(path).name == "last.pt" and obj["epoch"] == 2:
            raise KeyboardInterrupt
        return save(obj, path)

    monkeypatch.setattr(loop, "save_checkpoint", cut)
    opts = train.options(RUN[:-1] + ["3", "--data-dir", str(cifar), "--out", str(out)])
    with pytest.raises(KeyboardInterrupt):
        train.run(opts)
    assert not stale.exists()
    r = json.loads((out / "result.json").read_text())
    ck = read_checkpoint(out / "last.pt")
    assert r["status"] == "interrupted" and ck["epoch"] == 1
    assert r["epochs_done"] == len(r["history"]) == ck["epoch"] and r["best"]["epoch"] <= ck["epoch"]
    assert r["history"] == ck["history"]


def test_files_get_the_umasks_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        p = train.write_json({"a": 1}, tmp_path / "r.json")
        q = save_checkpoint({"a": torch.zeros(1)}, tmp_path / "c.pt")
    finally:
        os.umask(old)
    assert (p.stat().st_mode & 0o777, q.stat().st_mode & 0o777) == (0o644, 0o644)


def test_unknown_experiment_group_is_an_error(capsys):
    with pytest.raises(SystemExit) as e:
        E.main(["list", "--group", "nope"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown group 'nope'; the groups are" in err and "'ablation'" in err
    assert E.list_experiments("ablation")


# ---------------------------------------------------------------- further: every public boundary
def _boundary_cases(tmp_path):
    save_checkpoint({"w": torch.zeros(1)}, tmp_path / "plain.pt")
    model = nn.Linear(2, 3)
    return [
        (lambda: recipes.WarmupCosine(10, 5), r"warmup_steps must be in \[0, total_steps=5\], got 10"),
        (lambda: recipes.WarmupCosine(0, 0), "total_steps must be a positive number, got 0"),
        (lambda: train.make_optimizer(model, train.TrainConfig()), "needs a resolved config: cfg.resolved"),
        (lambda: train.make_scheduler(torch.optim.SGD(model.parameters(), lr=0.1),
                                      train.TrainConfig().resolved(8), 0), "steps_per_epoch must be a positive"),
        (lambda: recipes.param_groups(model, -1.0), "weight_decay must be a finite number >= 0, got -1.0"),
        (lambda: confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), 3),
         r"targets must be class indices in \[0, 2\]"),
        (lambda: topk_correct(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 0), "k must be a positive"),
        (lambda: train.export_weights(tmp_path / "plain.pt", tmp_path / "w.pt"),
         r"plain.pt is not a training checkpoint of fit .*top-level keys: \['w'\]"),
        (lambda: data.ImageDataset(["a", "b"], [0, 2], ["x", "y"]), r"targets must be labels in \[0, 1\] .* got \[2\]"),
        (lambda: data.EpochSampler(-1), "n must be an integer >= 0"),
        (lambda: data.denormalize(torch.zeros(1, 32, 32), "cifar10"), r"x must be images \(..., 3, H, W\)"),
        (lambda: cam.to_rgb(torch.zeros(1, 3, 8, 8), (0, 0, 0), (1, 1, 1)), r"x must be one image \(3, H, W\)"),
        (lambda: cam.prepare(None, 0, (0, 0, 0), (1, 1, 1)), "size must be a positive integer"),
        (lambda: cam.query_attention(torch.zeros(1, 2, 16, 16), (0, 0), (4, 4), batch_index=1),
         r"batch_index must be in \[0, 0\]"),
        (lambda: receptive.reach(receptive.conv_op(3), 5, 2, source=(5, 0)), "source .* lies outside"),
        (lambda: erf.feature_maps(model, [], torch.zeros(1, 2)), "layers is empty"),
        (lambda: E.Experiment("x", "emo_1m_cifar", epochs=0), "epochs must be a positive integer, got 0"),
        (lambda: E.Experiment("x", "emo_1m_cifar", data="cifar100"), "data must be 'cifar10' or 'imagenette'"),
        (lambda: bench.run(["emo_1m"], [(32, 1)], modes=["fast"]), r"modes must be a non-empty list of"),
        (lambda: mbe.create_model("emo_1m_cifar", num_classes=2.5), "num_classes must be an integer >= 0"),
        (lambda: mbe.create_model("mobilenetv2_100", stages=[(6, 24, 2)]), r"stages must be rows \(t, c, n, s\)"),
        (lambda: mbe.create_model("ghostnet_050", stages=[[(3, 16, 16)]]), "stages must be stages of rows"),
        (lambda: mbe.create_model("ghostnet_050_cifar", stages=[]), "ghostnet_050_cifar sets 'stages' itself"),
    ]


def test_public_functions_check_their_arguments(tmp_path):
    for call, message in _boundary_cases(tmp_path):
        with pytest.raises((ValueError, CheckpointError), match=message):
            call()


def test_evaluate_refuses_labels_beyond_the_outputs():
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(torch.zeros(4, 2), torch.tensor([0, 1, 2, 5])), batch_size=4)
    with pytest.raises(ValueError, match="the data has label 5 but the model has 3 outputs"):
        train.evaluate(nn.Linear(2, 3), loader)


def test_summarize_names_the_metrics(tmp_path, monkeypatch):
    committed = env.results_dir() / "cifar10_emo_1m_seed0.json"
    shutil.copy(committed, tmp_path / committed.name)
    with pytest.raises(ValueError, match=r"metric 'acc' is not in the final evaluation .* one of \[.*'top1', 'top5'\]"):
        E.summarize("cifar10_emo_1m", tmp_path, metric="acc")
