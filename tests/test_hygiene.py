"""A library function leaves the caller's state as it found it: every submodule's own training mode,
torch's thread count, the socket timeout, the umask, the logging setup. And one of each: one device
resolver, one environment record, one atomic report writer, one ``PathLike``."""
import http.server
import json
import logging
import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import mobileblocks_edu as mbe
from mobileblocks_edu import checkpoint, env
from mobileblocks_edu.analysis import bench
from mobileblocks_edu.analysis.complexity import count_flops
from mobileblocks_edu.data import download
from mobileblocks_edu.models.ghostnet import architecture_table
from mobileblocks_edu.train import recipes, runinfo
from mobileblocks_edu.train.results import evaluate

PACKAGE = Path(mbe.__file__).parent


# ---- modes --------------------------------------------------------------------------------------
def test_a_frozen_batchnorm_stays_frozen(one_thread):
    """A model in train mode with one BatchNorm frozen in eval on purpose: evaluating it, reading
    its architecture table and counting its FLOPs run it in eval mode, and give every module its
    own mode back (restoring only the top-level mode would un-freeze that BatchNorm)."""
    torch.manual_seed(0)
    model = mbe.create_model("ghostnet_050_cifar", num_classes=10).train()
    frozen = model.stem.norm
    frozen.eval()
    modes = {name: m.training for name, m in model.named_modules()}
    loader = DataLoader(TensorDataset(torch.randn(4, 3, 32, 32), torch.arange(4)), batch_size=2)

    def check(after):
        assert not frozen.training, f"{after} un-froze the BatchNorm"
        assert {name: m.training for name, m in model.named_modules()} == modes, after

    evaluate(model, loader, device="cpu")
    check("evaluate")
    architecture_table(model, img_size=32)
    check("architecture_table")
    count_flops(model, (1, 3, 32, 32))
    check("count_flops")
    assert sum(not t for t in modes.values()) == 1  # only the frozen one is in eval


def test_one_per_module_restore_loop():
    src = {p: p.read_text() for p in PACKAGE.rglob("*.py")}
    assert not [p for p, s in src.items() if "train(was_training)" in s]
    assert sum(s.count("m.training = training") for s in src.values()) == 1


# ---- process-wide state -------------------------------------------------------------------------
def test_no_library_function_sets_process_wide_state_in_passing():
    pattern = re.compile(r"json\.dumps\(report|setdefaulttimeout|os\.umask\(0\)|logging\.disable")
    hits = [f"{p.relative_to(PACKAGE)}:{i}" for p in PACKAGE.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits


def test_bench_run_gives_the_thread_count_back():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = bench.run(["mobilenetv2_100_cifar"], [(32, 2)], ["eval"], repeats=1, warmup=0, threads=2,
                           num_classes=10, log=None)
        assert torch.get_num_threads() == 1
        assert report["threads"] == 2 and "torch threads 2" in report["machine"]
    finally:
        torch.set_num_threads(before)


def test_run_latency_gives_the_thread_count_back():
    from mobileblocks_edu.deploy import latency

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = latency.run_latency(["ghostnet_050_cifar"], size=32, rounds=1, inner=1, warmup=0, threads=2,
                                     settings=("eager",), log=None)
        assert torch.get_num_threads() == 1 and report["threads"] == 2
    finally:
        torch.set_num_threads(before)


def test_torch_threads_restores_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), env.torch_threads(before + 1):
        assert torch.get_num_threads() == before + 1
        raise RuntimeError
    assert torch.get_num_threads() == before


def test_atomic_write_leaves_the_umask_alone(tmp_path, monkeypatch):
    old = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", lambda *a: pytest.fail("atomic_write changed the umask"))
        p = checkpoint.write_json({"a": 1}, tmp_path / "r.json")
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o640 and json.loads(p.read_text()) == {"a": 1}
    assert checkpoint.temporary_files(p) == []
    with pytest.raises(ValueError):
        checkpoint.write_json({"a": float("nan")}, tmp_path / "nan.json")
    assert not (tmp_path / "nan.json").exists() and checkpoint.temporary_files(tmp_path / "nan.json") == []


class _Archive(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3000000")
        self.end_headers()
        self.wfile.write(b"x" * 3_000_000)

    def log_message(self, *args):
        pass


def test_fetch_bounds_its_own_wait_only(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Archive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    silent = socket.socket()  # accepts connections (backlog) but never answers: a stalled transfer
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    before = socket.getdefaulttimeout()
    try:
        out = download.fetch(f"http://127.0.0.1:{server.server_address[1]}/a.tgz", tmp_path / "a.tgz", timeout=5.0)
        assert out.stat().st_size == 3_000_000
        t0 = time.perf_counter()
        with pytest.raises(OSError):
            download.fetch(f"http://127.0.0.1:{silent.getsockname()[1]}/b.tgz", tmp_path / "b.tgz", timeout=0.5)
        assert time.perf_counter() - t0 < 5
        assert socket.getdefaulttimeout() == before
    finally:
        server.shutdown()
        server.server_close()
        silent.close()


def test_quantization_silences_only_onnxruntime(tmp_path, caplog, one_thread):
    pytest.importorskip("onnxruntime")
    from mobileblocks_edu.deploy import export_onnx, quantize

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.Flatten()).eval()
    export_onnx(model, tmp_path / "f.onnx", size=8)
    root = logging.getLogger()
    state = (logging.root.manager.disable, root.level, list(root.handlers), list(root.filters))
    with caplog.at_level(logging.INFO):
        quantize.quantize_int8(tmp_path / "f.onnx", tmp_path / "q.onnx", torch.randn(2, 3, 8, 8))
        logging.getLogger("mbe.test").warning("still heard")
    assert (logging.root.manager.disable, root.level, list(root.handlers), list(root.filters)) == state
    heard = [r for r in caplog.records if r.levelno < logging.ERROR]
    assert [r.getMessage() for r in heard if "onnxruntime" in r.pathname] == []
    assert "still heard" in caplog.text


# ---- one of each --------------------------------------------------------------------------------
def test_one_device_resolver():
    assert recipes.check_device is env.check_device
    assert env.check_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be"):
        env.check_device("gpu")


def test_one_environment_record_and_old_files_stay_readable():
    from mobileblocks_edu.deploy import latency

    assert runinfo.environment is env.environment and not hasattr(latency, "environment")
    rec = env.environment()
    assert {"machine", "threads", "python", "torch", "torchvision", "platform", "omp_wait_policy",
            "load_average_start", "date"} <= set(rec)
    assert "hardware" not in rec and rec["threads"] == torch.get_num_threads()
    json.dumps(rec, allow_nan=False)
    assert runinfo.machine_of(rec) == rec["machine"]
    assert runinfo.machine_of({"hardware": "an old run's machine"}) == "an old run's machine"
    results = env.results_dir()
    if results is not None and results.is_dir():
        for f in sorted(results.glob("*.json")):
            r = json.loads(f.read_text())
            if isinstance(r, dict) and ("machine" in r or "hardware" in r):
                assert runinfo.machine_of(r), f.name


def test_one_pathlike():
    defs = [p for p in PACKAGE.rglob("*.py") if re.search(r"^PathLike\s*=", p.read_text(), re.M)]
    assert defs == [PACKAGE / "env.py"]
