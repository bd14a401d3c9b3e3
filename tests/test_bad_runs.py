"""Bad input around training runs and checkpoints: a clear error, or the right behaviour."""
import io
import json
import re
from pathlib import Path

import pytest
import torch

import mobileblocks_edu as mbe
from mobileblocks_edu import checkpoint, data, train
from mobileblocks_edu.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from mobileblocks_edu.train import loop

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL = "ghostnet_050_cifar"
RUN = ["--model", MODEL, "--batch-size", "4", "--subset", "1", "--img-size", "16", "--offline", "--no-progress",
       "--threads", "1"]


@pytest.fixture(scope="module")
def ema_run(cifar, tmp_path_factory):
    """A finished 2-epoch run with EMA (a fast EMA, so that it differs from the raw weights)."""
    out = tmp_path_factory.mktemp("runs") / "E"
    assert train.main(RUN + ["--epochs", "2", "--ema", "--ema-decay", "0.5", "--data-dir", str(cifar),
                             "--out", str(out)]) == 0
    return out


def _ema_weights(ck):
    return {k[len("module."):]: v for k, v in ck["ema"].items() if k.startswith("module.")}


# ---------------------------------------------------------------- 1. what load_checkpoint loads
@pytest.mark.parametrize("name", ["last.pt", "best.pt"])
def test_loading_a_training_checkpoint_gives_the_weights_the_run_evaluated(ema_run, cifar, tmp_path, name):
    ck = read_checkpoint(ema_run / name)
    ema, raw = _ema_weights(ck), ck["model"]
    assert any(not torch.equal(ema[k], raw[k]) for k in raw)  # the test can tell them apart
    model = load_checkpoint(mbe.create_model(MODEL, num_classes=10), ema_run / name)
    assert all(torch.equal(v, ema[k]) for k, v in model.state_dict().items())
    exported = train.export_weights(ema_run / name, tmp_path / "w.pt")  # one rule for both
    assert all(torch.equal(v, read_checkpoint(exported)[k]) for k, v in model.state_dict().items())
    raw_model = load_checkpoint(mbe.create_model(MODEL, num_classes=10), ema_run / name, ema=False)
    assert all(torch.equal(v, raw[k]) for k, v in raw_model.state_dict().items())
    if name == "last.pt":  # the accuracy result.json reports is the accuracy of what was loaded
        _, val = data.build_loaders("cifar10", root=cifar, download=False, img_size=16, batch_size=4,
                                    eval_subset=None, subset=1)
        final = json.loads((ema_run / "result.json").read_text())["final"]
        got = train.evaluate(model, val, "cpu", "off", channels_last=ck["config"]["channels_last"])
        assert got.top1 == pytest.approx(final["top1"])


def test_ema_switches_are_checked(ema_run, tmp_path):
    m = mbe.create_model(MODEL, num_classes=10)
    save_checkpoint(m.state_dict(), tmp_path / "plain.pt")
    cases = [
        (lambda: load_checkpoint(m, ema_run / "last.pt", strict="no"), "strict must be True or False, got 'no'"),
        (lambda: load_checkpoint(m, ema_run / "last.pt", ema="yes"), "ema must be True, False or None, got 'yes'"),
        (lambda: load_checkpoint(m, tmp_path / "plain.pt", ema=True), "plain.pt: ema=True applies to training"),
        (lambda: load_checkpoint(m, ema_run / "last.pt", key="model", ema=True), "not both"),
        (lambda: train.export_weights(ema_run / "last.pt", tmp_path / "w.pt", half="no"),
         "half must be True or False, got 'no'"),
        (lambda: train.export_weights(ema_run / "last.pt", tmp_path / "w.pt", ema="no"),
         "ema must be True, False or None, got 'no'"),
    ]
    for call, message in cases:
        with pytest.raises((ValueError, CheckpointError), match=message):
            call()


def test_ema_true_of_a_run_without_ema_is_refused(ema_run, tmp_path):
    ck = read_checkpoint(ema_run / "last.pt")
    ck["ema"] = None
    save_checkpoint(ck, tmp_path / "noema.pt")
    m = mbe.create_model(MODEL, num_classes=10)
    with pytest.raises(CheckpointError, match="noema.pt has no EMA weights"):
        load_checkpoint(m, tmp_path / "noema.pt", ema=True)
    load_checkpoint(m, tmp_path / "noema.pt")  # the model's weights: all the run had
    assert all(torch.equal(v, ck["model"][k]) for k, v in m.state_dict().items())


# ---------------------------------------------------------------- 5. Ctrl-C while a checkpoint is written
class _CutWriter(io.RawIOBase):
    """A file that receives a Ctrl-C at its fifth write, as torch.save writes into it."""

    def __init__(self, f):
        self.f, self.n = f, 0

    def writable(self):
        return True

    def write(self, b):
        self.n += 1
        if self.n == 5:
            raise KeyboardInterrupt
        return self.f.write(b)


def _cut_save(obj, path):
    return checkpoint.atomic_write(path, lambda f: torch.save(obj, _CutWriter(f)))


def test_ctrl_c_during_a_save_is_an_interrupt(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _cut_save({"w": torch.zeros(10**5)}, tmp_path / "last.pt")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_a_runs_save_reads_as_interrupted(cifar, tmp_path, monkeypatch, capsys):
    out = tmp_path / "R"
    save = loop.save_checkpoint

    def cut_at_epoch_2(obj, path):
        return (_cut_save if obj["epoch"] == 2 else save)(obj, path)

    monkeypatch.setattr(loop, "save_checkpoint", cut_at_epoch_2)
    assert train.main(RUN + ["--epochs", "3", "--data-dir", str(cifar), "--out", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert json.loads((out / "result.json").read_text())["status"] == "interrupted"
    assert read_checkpoint(out / "last.pt")["epoch"] == 1
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- 7. what --resume reads back
def _bad_last(ema_run, folder: Path, kind: str) -> Path:
    folder.mkdir()
    good = read_checkpoint(ema_run / "last.pt")
    if kind == "weights only":
        train.export_weights(ema_run / "last.pt", folder / "last.pt")
    elif kind == "truncated":
        (folder / "last.pt").write_bytes((ema_run / "last.pt").read_bytes()[:4000])
    elif kind == "format":
        save_checkpoint(good | {"format": 99}, folder / "last.pt")
    elif kind == "fit from Python":
        save_checkpoint(good | {"meta": {}}, folder / "last.pt")
    elif kind == "text":
        (folder / "last.pt").write_text("not a checkpoint\n")
    return folder


@pytest.mark.parametrize("kind, message", [
    ("weights only", r"last.pt holds weights only \(\d+ tensors, as export_weights writes them\), not a training"),
    ("truncated", "cannot read checkpoint .*last.pt: it is not a complete file written by torch.save"),
    ("text", "cannot read checkpoint .*last.pt: it is not a complete file written by torch.save"),
    ("format", "last.pt is a training checkpoint of format 99; this version of the library reads format 1"),
    ("fit from Python", r"last.pt was written by fit\(\) from Python, not by this command"),
])
def test_resume_of_a_file_that_is_no_run_is_named(ema_run, tmp_path, capsys, kind, message):
    out = _bad_last(ema_run, tmp_path / "R", kind)
    with pytest.raises(SystemExit) as e:
        train.main(["--out", str(out), "--resume"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search("--resume: .*" + message, err), err


@pytest.mark.parametrize("kind, message", [
    ("weights only", "holds weights only"),
    ("format", "format 99"),
])
def test_fit_resume_of_a_file_that_is_no_run_is_named(ema_run, cifar, tmp_path, kind, message):
    out = _bad_last(ema_run, tmp_path / "R", kind)
    opts = train.options(RUN + ["--epochs", "2", "--ema", "--ema-decay", "0.5", "--data-dir", str(cifar),
                                "--out", str(out)])
    with pytest.raises(CheckpointError, match=message):
        train.run(opts, resume=True)


def test_resume_with_another_model_names_the_file_and_keys(ema_run, cifar, tmp_path, capsys):
    out = tmp_path / "R"
    out.mkdir()
    ck = read_checkpoint(ema_run / "last.pt")
    ck["meta"]["args"]["model"] = "mobilenetv2_100_cifar"  # as if the model had been renamed
    save_checkpoint(ck, out / "last.pt")
    assert train.main(["--out", str(out), "--resume", "--data-dir", str(cifar)]) == 2
    err = capsys.readouterr().err
    assert f"cannot resume: checkpoint {out / 'last.pt'} does not fit MobileNetV2" in err
    assert "missing (" in err and "unexpected (" in err and f"the run trained {MODEL}" in err


def test_loading_another_models_checkpoint_names_the_file(ema_run):
    with pytest.raises(CheckpointError, match=f"checkpoint {ema_run / 'last.pt'} does not fit MobileNetV2"):
        load_checkpoint(mbe.create_model("mobilenetv2_100_cifar", num_classes=10), ema_run / "last.pt")


def test_reading_a_non_checkpoint_says_what_it_is(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder, not a checkpoint file"):
        read_checkpoint(tmp_path)
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pt")  # a whole pickled model
    with pytest.raises(CheckpointError, match=r"objects other than tensors .* save model.state_dict\(\) instead"):
        read_checkpoint(tmp_path / "model.pt")
    (tmp_path / "r.json").write_text("{}")
    with pytest.raises(CheckpointError, match="r.json: it is not a complete file written by torch.save"):
        read_checkpoint(tmp_path / "r.json")


# ---------------------------------------------------------------- 8. the output folder of a failed run
def test_a_run_failing_on_its_data_leaves_no_empty_folder(tmp_path, capsys):
    out = tmp_path / "runs" / "R"  # neither folder exists yet
    assert train.main(RUN + ["--epochs", "1", "--data-dir", str(tmp_path / "nodata"), "--out", str(out)]) == 2
    assert "was not found" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("content", [None, "notes.txt"])
def test_a_failed_run_keeps_a_folder_that_existed(tmp_path, capsys, content):
    out = tmp_path / "R"
    out.mkdir()
    if content:
        (out / content).write_text("mine")
    assert train.main(RUN + ["--epochs", "1", "--data-dir", str(tmp_path / "nodata"), "--out", str(out)]) == 2
    assert out.is_dir() and sorted(p.name for p in out.iterdir()) == ([content] if content else [])


def test_fit_failing_before_its_first_write_leaves_no_folder(cifar, tmp_path, monkeypatch):
    def full(*a, **k):
        raise checkpoint.WriteError("no room")

    monkeypatch.setattr(loop, "check_free_space", full)
    tl, vl = data.build_loaders("cifar10", root=cifar, download=False, img_size=16, batch_size=4, subset=1)
    with pytest.raises(checkpoint.WriteError):
        train.fit(mbe.create_model(MODEL, num_classes=10), tl, vl, train.TrainConfig(epochs=1, progress=False),
                  tmp_path / "R")
    assert not (tmp_path / "R").exists()


# ---------------------------------------------------------------- switches and options of the entry points
def test_run_switches_and_options_are_checked(cifar, tmp_path):
    opts = train.options(RUN + ["--epochs", "1", "--data-dir", str(cifar), "--out", str(tmp_path / "R")])
    with pytest.raises(ValueError, match="resume must be True, False or None, got 'no'"):
        train.run(opts, resume="no")
    with pytest.raises(ValueError, match=r"opts lacks \['batch_size'"):
        train.run({k: v for k, v in opts.items() if k != "batch_size"})
    tl, _ = data.build_loaders("cifar10", root=cifar, download=False, img_size=16, batch_size=4, subset=1)
    with pytest.raises(ValueError, match="resume must be True or False, got 'no'"):
        train.fit(mbe.create_model(MODEL, num_classes=10), tl, out_dir=tmp_path / "R", resume="no")
    assert not (tmp_path / "R").exists()
