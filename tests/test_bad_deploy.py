"""The deployment commands and functions check their arguments before any work: a bad value names
the argument (or option) and what is allowed, before a model is built, exported or timed."""
import os
from pathlib import Path

import pytest
import torch

import mobileblocks_edu as mbe
from mobileblocks_edu import deploy
from mobileblocks_edu.analysis import bench
from mobileblocks_edu.deploy import cli, export, latency, quantize
from mobileblocks_edu.train import experiments as E

pytestmark = pytest.mark.usefixtures("one_thread")


def _never(what):
    def fail(*a, **k):
        pytest.fail(f"{what} ran before the arguments were checked")
    return fail


@pytest.fixture
def no_work(monkeypatch):
    """Any measurement, export or checkpoint read fails the test."""
    for mod, name in ((cli, "run_latency"), (cli, "run_quantization"), (latency, "build_contenders"),
                      (quantize, "export_onnx"), (E, "load_trained"), (bench, "build_pair")):
        monkeypatch.setattr(mod, name, _never(f"{mod.__name__}.{name}"))


# ---- the command line: every option is checked when parsed ------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["quantize", "--experiments", "cifar10_emo_1m"],
     "argument --experiments: experiment 'cifar10_emo_1m' is trained on cifar10, but the quantization calibrates "
     "and evaluates on imagenette; choose among imagenette_emo_1m, imagenette_ghostnet_100"),
    (["quantize", "--experiments", "emo_1m_cifar"], "'emo_1m_cifar' is trained on cifar10"),
    (["quantize", "--experiments", "imagenette_emo_1n"], "did you mean 'imagenette_emo_1m'"),
    (["quantize", "--rounds", "0"], "argument --rounds: must be an integer >= 1, got '0'"),
    (["quantize", "--threads", "0"], "argument --threads: must be an integer >= 1, got '0'"),
    (["quantize", "--calib-per-class", "0"], "argument --calib-per-class: must be an integer >= 1, got '0'"),
    (["quantize", "--eval-per-class", "-1"], "argument --eval-per-class: must be an integer >= 1, got '-1'"),
    (["latency", "--rounds", "0"], "argument --rounds: must be an integer >= 1, got '0'"),
    (["latency", "--inner", "0"], "argument --inner: must be an integer >= 1, got '0'"),
    (["latency", "--threads", "0"], "argument --threads: must be an integer >= 1, got '0'"),
    (["latency", "--warmup", "-5"], "argument --warmup: must be an integer >= 0, got '-5'"),
    (["latency", "--size", "0"], "argument --size: must be an integer >= 32, got '0'"),
    (["latency", "--size", "31"], "argument --size: must be an integer >= 32, got '31'"),
    (["latency", "--models", "ghostnet_050_cifar", "emo_1n"],
     "argument --models: unknown model 'emo_1n'; did you mean 'emo_1m'"),
])
def test_deploy_options_are_checked_when_parsed(argv, message, no_work, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def _unwritable(monkeypatch, folder: Path) -> None:
    """``folder`` reads as not writable, also for root (who may write anywhere)."""
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: Path(p) != folder and access(p, mode, **k))


@pytest.mark.parametrize("command", ["latency", "quantize", "bench"])
def test_an_unusable_output_is_refused_before_measuring(command, tmp_path, monkeypatch, no_work, capsys):
    main = bench.main if command == "bench" else lambda argv: cli.main([command, *argv])
    (tmp_path / "file").write_text("")
    locked = tmp_path / "locked"
    locked.mkdir()
    _unwritable(monkeypatch, locked)
    for output, message in ((tmp_path, f"--output: {tmp_path} is a folder; name a JSON file"),
                            (tmp_path / "file" / "r.json", f"{tmp_path / 'file'} is a file"),
                            (locked / "sub" / "r.json", f"--output: cannot write in {locked}")):
        with pytest.raises(SystemExit) as e:
            main(["--output", str(output)])
        assert e.value.code == 2 and message in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("")  # the default folder of the reports is a file
    with pytest.raises(SystemExit):
        main([])
    assert "runs is a file" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--repeats", "0"], "argument --repeats: must be an integer >= 1, got '0'"),
    (["--warmup", "-1"], "argument --warmup: must be an integer >= 0, got '-1'"),
    (["--threads", "0"], "argument --threads: must be an integer >= 1, got '0'"),
    (["--settings", "224x32"], "argument --settings: a setting is SIZE:BATCH such as 224:32, got '224x32'"),
    (["--models", "emo_1n"], "--models: unknown model 'emo_1n'; did you mean 'emo_1m'"),
])
def test_bench_options_are_checked_when_parsed(argv, message, no_work, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_bench_run_checks_before_building(no_work):
    ok = dict(models=["ghostnet_050_cifar"], settings=[(32, 2)], modes=["eval"])
    for bad, message in ((dict(models=["emo_1n"]), "unknown model 'emo_1n'; did you mean 'emo_1m'"),
                         (dict(models="emo_1m"), "models must be a non-empty list"),
                         (dict(settings=[]), "settings must be a non-empty list"),
                         (dict(settings=[(32, True)]), "settings must be (size, batch) pairs"),
                         (dict(repeats=0), "repeats must be an integer >= 1, got 0"),
                         (dict(warmup=-1), "warmup must be an integer >= 0, got -1")):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            bench.run(**{**ok, **bad}, log=None)


# ---- the Python functions ---------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    (dict(size=0), "size must be an integer >= 32, got 0"),
    (dict(rounds=0), "rounds must be an integer >= 1, got 0"),
    (dict(inner=0), "inner must be an integer >= 1, got 0"),
    (dict(warmup=-5), "warmup must be an integer >= 0, got -5"),
    (dict(threads=0), "threads must be an integer >= 1, got 0"),
    (dict(rounds=2.5), "rounds must be an integer >= 1, got 2.5"),
    (dict(settings=[]), "settings must be a non-empty list"),
    (dict(models="ghostnet_050_cifar"), "models must be a list of model names, got the string"),
    (dict(models=["ghostnet_050_cifar", "emo_1n"]), r"unknown models \['emo_1n'\] \('emo_1n': did you mean 'emo_1m'"),
])
def test_run_latency_checks_before_building(kwargs, message, no_work):
    with pytest.raises(ValueError, match=message):
        latency.run_latency(**{"models": ["ghostnet_050_cifar"], "size": 32, **kwargs}, log=None)


@pytest.mark.parametrize("kwargs, message", [
    (dict(experiments=["cifar10_emo_1m"]), "experiment 'cifar10_emo_1m' is trained on cifar10"),
    (dict(experiments="imagenette_emo_1m"), "experiments must be a non-empty list"),
    (dict(experiments=["imagenette_emo_1m", "nope"]), "unknown experiment 'nope'"),
    (dict(calib_per_class=0), "calib_per_class must be an integer >= 1, got 0"),
    (dict(eval_per_class=0), "eval_per_class must be an integer >= 1, got 0"),
    (dict(rounds=0), "rounds must be an integer >= 1, got 0"),
    (dict(inner=0), "inner must be an integer >= 1, got 0"),
    (dict(threads=0), "threads must be an integer >= 1, got 0"),
])
def test_run_quantization_checks_before_exporting(kwargs, message, no_work):
    with pytest.raises(ValueError, match=message):
        quantize.run_quantization(**kwargs, log=None)


def test_run_quantization_names_every_missing_checkpoint_first(tmp_path, monkeypatch, no_work):
    monkeypatch.setattr(E, "checkpoint_path", lambda name, *a, **k: tmp_path / f"{name}.pt")
    with pytest.raises(FileNotFoundError, match=r"no committed checkpoint for \['imagenette_emo_1m', "
                                                r"'imagenette_ghostnet_100'\]"):
        quantize.run_quantization(log=None)


def test_quantize_int8_checks_its_files_and_images(tmp_path):
    pytest.importorskip("onnxruntime")
    f32 = tmp_path / "f.onnx"
    with pytest.raises(FileNotFoundError, match="onnx_in: no ONNX file at"):
        quantize.quantize_int8(f32, tmp_path / "q.onnx", torch.randn(2, 3, 32, 32))
    f32.write_bytes(b"")  # the checks below come before the file is read
    with pytest.raises(ValueError, match="onnx_out .* is a folder"):
        quantize.quantize_int8(f32, tmp_path, torch.randn(2, 3, 32, 32))
    for calib, shown in ((torch.randn(0, 3, 32, 32), r"\(0, 3, 32, 32\)"), (torch.randn(3, 32, 32), r"\(3, 32, 32\)"),
                         ([1, 2], "list")):
        with pytest.raises(ValueError, match=f"calibration must be a float tensor .*got {shown}"):
            quantize.quantize_int8(f32, tmp_path / "q.onnx", calib)


def test_export_and_fold_name_their_arguments(tmp_path, monkeypatch):
    model = mbe.create_model("ghostnet_050_cifar")
    monkeypatch.setattr(torch.onnx, "export", _never("torch.onnx.export"))
    for kwargs, message in ((dict(size=0), "size must be a positive number, got 0"),
                            (dict(batch=0), "batch must be a positive number, got 0"),
                            (dict(size=32.0), "size must be a positive number, got 32.0"),
                            (dict(path=tmp_path), "path .* is a folder: name an .onnx file")):
        with pytest.raises(ValueError, match=message):
            deploy.export_onnx(model, **kwargs)
    with pytest.raises(TypeError, match="model must be an nn.Module .*got str"):
        deploy.export_onnx("ghostnet_050_cifar")
    for x in (torch.randn(1, 3, 32, 31), torch.randn(3, 32, 32), torch.randn(0, 3, 32, 32)):
        with pytest.raises(ValueError, match=r"x must be a batch of square images \(B, 3, S, S\)"):
            deploy.check_export(model, x)
    with pytest.raises(TypeError, match="model must be an nn.Module .*got str"):
        deploy.fold_batchnorm("ghostnet_050_cifar")
    with pytest.raises(TypeError, match="model must be an nn.Module .*got OrderedDict"):
        deploy.fold_batchnorm(model.state_dict())


def test_sample_images_and_ort_session_name_their_arguments(tmp_path):
    for kwargs, message in ((dict(n=0), "n must be a positive number, got 0"),
                            (dict(size=-1), "size must be a positive number, got -1"),
                            (dict(data=tmp_path / "missing"), "data .*missing is not a folder"),
                            (dict(model_name="emo_1n"), "unknown model 'emo_1n'; did you mean")):
        with pytest.raises(ValueError, match=message):
            deploy.sample_images(**kwargs)
    pytest.importorskip("onnxruntime")
    with pytest.raises(FileNotFoundError, match="onnx_model: no ONNX file at .*missing.onnx"):
        deploy.ort_session(tmp_path / "missing.onnx")
    with pytest.raises(FileNotFoundError, match="onnx_model: no ONNX file at"):
        deploy.ort_session(tmp_path)
    with pytest.raises(ValueError, match="threads must be a positive number, got 0"):
        deploy.ort_session(b"not read", threads=0)
    assert export.ort_session is deploy.ort_session
