"""The result files the lessons read are checked, never trusted blindly.

A truncated, empty or malformed result, one with a NaN or a missing key, another experiment's
result under an experiment's name, or one whose command no longer matches the experiment raises
``ResultFileError`` naming the file, what is wrong and the command that writes it again. An
unfinished run is left out of the tables with one printed line. ``collect`` writes atomically.
"""
import json
import shutil
from dataclasses import replace

import pytest
import torch

from mobileblocks_edu import lab
from mobileblocks_edu.train import experiments as E

NAME = "cifar10_emo_1m"
REWRITE = f"write it again with: python -m mobileblocks_edu.experiments run {NAME} --seed 0, then collect {NAME}"
COMMITTED = lab.results_dir()
pytestmark = pytest.mark.skipif(COMMITTED is None or not (COMMITTED / f"{NAME}_seed0.json").is_file(),
                                reason="needs the committed results of the repository")


def _committed(name=NAME, seed=0) -> dict:
    return json.loads((COMMITTED / f"{name}_seed{seed}.json").read_text())


@pytest.fixture
def results(tmp_path):
    """A results folder holding the three committed seeds of NAME."""
    folder = tmp_path / "results"
    folder.mkdir()
    for s in (0, 1, 2):
        shutil.copyfile(COMMITTED / f"{NAME}_seed{s}.json", folder / f"{NAME}_seed{s}.json")
    return folder


def _nan(text):
    return text.replace('"top1": ', '"top1": NaN, "x": ', 1)


def _without(key):
    def edit(text):
        r = json.loads(text)
        del r[key]
        return json.dumps(r)
    return edit


def _with(key, value):
    def edit(text):
        r = json.loads(text)
        r[key] = value
        return json.dumps(r)
    return edit


@pytest.mark.parametrize("edit, what", [
    (lambda t: t[: len(t) // 2], "is not valid JSON"),  # a copy killed half-way
    (lambda t: "", "is empty"),
    (lambda t: "[1, 2]", "holds a JSON list, not an object"),
    (_nan, "holds NaN"),
    (_without("final"), "has no 'final'"),
    (_without("history"), "has no 'history'"),
    (_with("final", [46.2]), "'final' is a list, not a dict"),
    (_with("final", {"top5": 90.0}), "has no number 'top1'"),
], ids=["truncated", "empty", "list", "nan", "no-final", "no-history", "final-list", "no-top1"])
def test_a_broken_result_names_the_file_and_the_command(results, edit, what):
    path = results / f"{NAME}_seed0.json"
    path.write_text(edit(path.read_text()))
    for read in (lambda: E.load_results(NAME, results), lambda: E.summarize(NAME, results),
                 lambda: E.read_result(path)):
        with pytest.raises(E.ResultFileError) as e:
            read()
        assert str(path) in str(e.value) and what in str(e.value) and REWRITE in str(e.value)


@pytest.mark.parametrize("status, epochs", [("interrupted", 2), ("failed", 0), ("done", 5)])
def test_an_unfinished_run_is_left_out_of_the_table(results, capsys, status, epochs):
    path = results / f"{NAME}_seed1.json"
    r = json.loads(path.read_text())
    r.update(status=status, epochs_done=epochs, history=r["history"][:epochs])
    path.write_text(json.dumps(r))
    runs = E.load_results(NAME, results)
    out = capsys.readouterr().out
    assert [x["seed"] for x in runs] == [0, 2]
    assert out.count("\n") == 1 and str(path) in out and f"status {status!r}, {epochs} of 8 epochs" in out
    s = E.summarize(NAME, results)
    assert s["seeds"] == [0, 2] and s["mean"] == pytest.approx(sum(x["final"]["top1"] for x in runs) / 2)
    with pytest.raises(E.UnfinishedRunError, match="is an unfinished run"):
        E.read_result(path)


def test_another_experiments_result_under_the_name_is_refused(results):
    shutil.copyfile(COMMITTED / "cifar10_ghostnet_100_seed0.json", results / f"{NAME}_seed0.json")
    with pytest.raises(E.ResultFileError, match=f"is not a run of {NAME} with seed 0") as e:
        E.load_results(NAME, results)
    assert "model: the result has 'ghostnet_100_cifar', cifar10_emo_1m needs 'emo_1m_cifar'" in str(e.value)
    shutil.copyfile(COMMITTED / f"{NAME}_seed1.json", results / f"{NAME}_seed0.json")  # another seed
    with pytest.raises(E.ResultFileError, match="seed: the result has 1, the file name says 0"):
        E.load_results(NAME, results)


def test_a_result_whose_command_no_longer_matches_is_refused(results, monkeypatch):
    monkeypatch.setitem(E.EXPERIMENTS, NAME, replace(E.get_experiment(NAME), epochs=10))
    with pytest.raises(E.ResultFileError, match="epochs: the result has 8, cifar10_emo_1m needs 10"):
        E.summarize(NAME, results)


def test_a_broken_report_names_the_file_and_its_command(tmp_path):
    shutil.copyfile(COMMITTED / "bench_cpu.json", tmp_path / "bench_cpu.json")
    assert E.read_report("bench_cpu", tmp_path)["groups"]
    path = tmp_path / "bench_cpu.json"
    path.write_text(path.read_text()[:100])
    with pytest.raises(E.ResultFileError, match="bench_cpu.json is not valid JSON") as e:
        E.read_report("bench_cpu", tmp_path)
    assert "write it again with: python -m mobileblocks_edu.bench --profile" in str(e.value)
    r = json.loads((COMMITTED / "latency_cpu.json").read_text())
    del r["models"]
    (tmp_path / "latency_cpu.json").write_text(json.dumps(r))
    with pytest.raises(E.ResultFileError, match="has no 'models'.*python -m mobileblocks_edu.deploy latency"):
        E.read_report("latency_cpu", tmp_path)


def _run_folder(tmp_path, result):
    out = tmp_path / "runs" / f"{NAME}_seed0"
    out.mkdir(parents=True)
    (out / "result.json").write_text(json.dumps(result))
    return tmp_path / "runs"


def test_collect_writes_atomically(tmp_path, monkeypatch):
    runs = _run_folder(tmp_path, _committed())
    dest = tmp_path / "results" / f"{NAME}_seed0.json"
    dest.parent.mkdir()
    dest.write_text("the previous result")

    def killed(fd):
        raise KeyboardInterrupt  # the process stopped before the new file was complete

    monkeypatch.setattr("mobileblocks_edu.checkpoint.os.fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        E.collect(NAME, runs, tmp_path / "results")
    assert dest.read_text() == "the previous result" and sorted(p.name for p in dest.parent.iterdir()) == [dest.name]
    monkeypatch.undo()
    assert E.collect(NAME, runs, tmp_path / "results") == [dest]
    assert dest.read_bytes() == (runs / f"{NAME}_seed0" / "result.json").read_bytes()


def test_collect_refuses_a_broken_run_record(tmp_path, capsys):
    r = _committed()
    del r["final"]
    runs = _run_folder(tmp_path, r)
    with pytest.raises(E.ResultFileError, match=f"result.json has no 'final'.*run {NAME} --seed 0"):
        E.collect(NAME, runs, tmp_path / "results")
    assert not (tmp_path / "results" / f"{NAME}_seed0.json").exists()
    (runs / f"{NAME}_seed0" / "result.json").write_text('{"status": "do')  # truncated
    with pytest.raises(SystemExit) as ex:
        E.main(["collect", NAME, "--runs", str(runs)])
    err = capsys.readouterr().err
    assert ex.value.code == 2 and "result.json is not valid JSON" in err and "Traceback" not in err
    (runs / f"{NAME}_seed0" / "result.json").write_text("[]")  # not an object
    with pytest.raises(E.RunMismatchError, match="holds a JSON list"):
        E.run_status(E.get_experiment(NAME), 0, runs)


def test_a_corrupt_checkpoint_in_a_run_folder_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "runs" / f"{NAME}_seed0"
    out.mkdir(parents=True)
    (out / "last.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(SystemExit) as ex:
        E.main(["run", NAME, "--seed", "0", "--runs", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert ex.value.code == 2 and "cannot read checkpoint" in err and str(out) in err
    E.main(["list", "--group", "cifar10", "--runs", str(tmp_path / "runs")])
    assert "unusable folder: cannot read checkpoint" in capsys.readouterr().out


def test_a_corrupt_collected_checkpoint_names_the_command(tmp_path):
    (tmp_path / f"{NAME}_seed0.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(E.ResultFileError, match=f"{NAME}_seed0.pt") as e:
        E.load_trained(NAME, checkpoints=tmp_path)
    assert f"{REWRITE} --checkpoint" in str(e.value)
    torch.save({"x": torch.zeros(1)}, tmp_path / f"{NAME}_seed0.pt")  # another model's weights
    with pytest.raises(E.ResultFileError, match="does not fit"):
        E.load_trained(NAME, checkpoints=tmp_path)
