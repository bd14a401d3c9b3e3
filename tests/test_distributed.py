"""Training on several processes: the sharded sampler, DDP against one process, resume under torchrun.

Two CPU processes talk through gloo, as ``torchrun --nproc_per_node=2`` starts them; every test
keeps the models and the data tiny (a few seconds of training, most of the time is start-up).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mobileblocks_edu import data, train
from mobileblocks_edu.blocks.layers import ConvNormAct
from mobileblocks_edu.checkpoint import read_checkpoint
from mobileblocks_edu.train import distributed

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ the sampler
@pytest.mark.parametrize("n, world", [(24, 2), (25, 3), (7, 1)])
def test_shards_are_disjoint_and_together_are_the_epoch(n, world):
    order = list(data.EpochSampler(n, seed=3))
    for epoch in (0, 1):
        shards = []
        for rank in range(world):
            s = data.EpochSampler(n, seed=3, rank=rank, num_replicas=world)
            s.set_epoch(epoch)
            shards.append(list(s))
            assert shards[-1] == list(s) and len(s) == n // world  # the same order again; even shards
        kept = n - n % world
        whole = data.EpochSampler(n, seed=3)
        whole.set_epoch(epoch)
        order = list(whole)
        assert sorted(sum(shards, [])) == sorted(order[:kept])  # disjoint, and the epoch's first n - n mod W
        b = 2  # batch k of every shard together is batch k of one process with batch b * W
        for k in range(kept // (b * world)):
            assert sorted(sum((sh[k * b:(k + 1) * b] for sh in shards), [])) == \
                sorted(order[k * b * world:(k + 1) * b * world])
    assert list(data.EpochSampler(n, seed=4)) != order  # another seed, another order
    # evaluation: no shuffle, nothing dropped, every index exactly once
    ev = [list(data.EpochSampler(n, shuffle=False, rank=r, num_replicas=world, even=False)) for r in range(world)]
    assert sorted(sum(ev, [])) == list(range(n))


def test_bad_shards_are_named():
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, 1\], got 2"):
        data.EpochSampler(8, rank=2, num_replicas=2)
    loader = DataLoader(TensorDataset(torch.zeros(12, 1)), batch_size=6, sampler=data.EpochSampler(12), drop_last=True)
    with pytest.raises(ValueError, match="batch_size=6 .* not divisible by the 4 processes"):
        distributed.shard_loader(loader, distributed.World(0, 4), train=True)
    assert distributed.shard_loader(loader, distributed.World(), train=True) is loader  # one process: unchanged


# ------------------------------------------------------------------ two processes against one
N_TRAIN, N_VAL, BATCH, EPOCHS = 24, 10, 8, 2


class TinyNet(nn.Module):
    """Conv-BN-act twice and a linear head; nothing random, so both sides draw no random number."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(ConvNormAct(3, 8, 3, 2), ConvNormAct(8, 8, 3))
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))


def _data():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(N_TRAIN + N_VAL, 3, 8, 8, generator=g), torch.randint(0, 4, (N_TRAIN + N_VAL,), generator=g)
    return TensorDataset(x[:N_TRAIN], y[:N_TRAIN]), TensorDataset(x[N_TRAIN:], y[N_TRAIN:])


def _config():
    return train.TrainConfig(epochs=EPOCHS, recipe="emo", lr=0.01, clip_grad=1.0, channels_last=False,
                             progress=False, device="cpu")


def _worker(rank, world, init_file, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        train_set, val_set = _data()
        loader = DataLoader(train_set, batch_size=BATCH, sampler=data.EpochSampler(N_TRAIN, seed=0), drop_last=True)
        train.fit(TinyNet(), loader, DataLoader(val_set, batch_size=4), _config(), out)
    finally:
        dist.destroy_process_group()


def _one_process_with_the_same_micro_batches():
    """One process, step by step as the two DDP processes: the global batch's two micro-batches
    (process r gets positions r, r + 2, ... of the batch, see EpochSampler), the gradients of
    their mean losses averaged, BatchNorm normalising each micro-batch by its own statistics and
    keeping process 0's running statistics (DDP broadcasts them before every forward pass)."""
    torch.manual_seed(0)
    model, (train_set, val_set) = TinyNet(), _data()
    cfg = _config().resolved(BATCH)
    optimizer = train.make_optimizer(model, cfg)
    scheduler = train.make_scheduler(optimizer, cfg, N_TRAIN // BATCH)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    sampler = data.EpochSampler(N_TRAIN, seed=0)
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler))
        for k in range(N_TRAIN // BATCH):
            batch = order[k * BATCH:(k + 1) * BATCH]
            optimizer.zero_grad()
            for rank in (1, 0):  # process 1's micro-batch with its statistics thrown away, then process 0's
                buffers = [b.clone() for b in model.buffers()]
                x, y = train_set[batch[rank::2]]
                criterion(model(x), y).backward()  # accumulates: grad = g1 + g0
                if rank == 1:
                    for b, saved in zip(model.buffers(), buffers):
                        b.copy_(saved)
            for p in model.parameters():
                p.grad /= 2  # DDP averages: g0 / 2 + g1 / 2
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            optimizer.step()
            scheduler.step()
    return model, train.evaluate(model, DataLoader(val_set, batch_size=N_VAL))


def test_two_processes_train_as_one_process_with_the_same_micro_batches(tmp_path, one_thread):
    """Exact up to the order of float sums: both sides compute each micro-batch's forward and
    backward pass with the same operations on one thread; DDP's average g0 / 2 + g1 / 2 and the
    reference's (g1 + g0) / 2 are equal in binary floating point (halving is exact, a sum of two
    terms commutes), and the optimizer then does the same steps. The tolerance, 1e-6 on weights
    of order 0.1 to 1 (some ulps), only leaves room for a reduction that splits its sums
    differently (e.g. another gloo version); a wrong shard, a missing average or BatchNorm over
    the global batch would differ by 1e-3 and more."""
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "run")), nprocs=2, join=True)
    model, ev = _one_process_with_the_same_micro_batches()
    ck = read_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["world_size"] == 2 and ck["batch_size"] == BATCH and ck["steps_per_epoch"] == N_TRAIN // BATCH
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ck["model"][k], v, rtol=0, atol=1e-6, msg=k)
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["world_size"] == 2 and result["batch_size"] == BATCH
    # every validation image counted exactly once: the two shards' counts add up
    assert result["final"]["n"] == N_VAL and sum(map(sum, result["final"]["confusion"])) == N_VAL
    assert result["final"]["top1"] == ev.top1 and result["final"]["confusion"] == ev.confusion.tolist()
    assert abs(result["final"]["loss"] - ev.loss) < 1e-5


# ------------------------------------------------------------------ resume under torchrun
RUN = ["--model", "ghostnet_050_cifar", "--batch-size", "4", "--img-size", "16", "--offline", "--no-progress",
       "--threads", "1", "--epochs", "2"]
STOP_AFTER_EPOCH_1 = """
import sys
from mobileblocks_edu.train import distributed
from mobileblocks_edu import train

def stop(record):
    raise KeyboardInterrupt  # in every process, after epoch 1 is saved

opts = train.options(sys.argv[1:])
with distributed.process_group("cpu"):
    try:
        train.run(opts, on_epoch=stop)
    except KeyboardInterrupt:
        sys.exit(130)
"""


def _torchrun(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, **kw)


def test_resume_under_torchrun_matches_the_uninterrupted_run(cifar, tmp_path):
    common = RUN + ["--data-dir", str(cifar)]
    straight = _torchrun(["-m", "mobileblocks_edu.train", *common, "--out", str(tmp_path / "straight")])
    assert straight.returncode == 0, straight.stderr[-2000:]
    script = tmp_path / "stop.py"
    script.write_text(STOP_AFTER_EPOCH_1)
    cut = _torchrun([str(script), *common, "--out", str(tmp_path / "cut")])
    assert cut.returncode != 0 and read_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1
    assert json.loads((tmp_path / "cut" / "result.json").read_text())["status"] == "interrupted"
    resumed = _torchrun(["-m", "mobileblocks_edu.train", "--out", str(tmp_path / "cut"), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = (read_checkpoint(tmp_path / d / "last.pt") for d in ("straight", "cut"))
    assert a["world_size"] == b["world_size"] == 2 and b["epoch"] == 2
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k  # bit for bit, as one process resumes
    for x, y in zip(a["history"], b["history"]):
        assert (x["train_loss"], x["val_top1"], x["val_loss"]) == (y["train_loss"], y["val_top1"], y["val_loss"])
    r = json.loads((tmp_path / "cut" / "result.json").read_text())
    assert r["status"] == "done" and r["world_size"] == 2 and r["final"]["n"] == r["val_images"] == 10
    # one process cannot continue a run of two: BatchNorm saw micro-batches of another size
    one = subprocess.run([sys.executable, "-m", "mobileblocks_edu.train", "--out", str(tmp_path / "cut"), "--resume"],
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert one.returncode == 2 and "processes: checkpoint 2, now 1" in one.stderr
