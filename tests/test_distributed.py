"""Data parallel through msrun on CPU: two workers end with the parameters of one process over the same global batch,
resume together, and a worker that dies fails the whole job with its log shown."""
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest


ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "config" / "caption_tiny.yaml")
# Image captioning with every row truncated to the same length and no dropout: each rank's mean loss is over as many
# tokens as the other's, so the mean of the ranks' gradients is the gradient of the whole global batch.
SAME_WORK = ["caption.inputs=[image]", "data.max_text_len=4", "model.dropout=0.0", "train.schedule=constant",
             "train.warmup_steps=0", "train.log_every=1", "train.save_every=100"]
PER_RANK_BATCH = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launcher_env(port: int) -> dict:
    return {**os.environ, "PYTHON": sys.executable, "MASTER_PORT": str(port), "CLUSTER_TIMEOUT": "120",
            "GLOG_v": "3"}


def cpu_launch(data, out, *sets, **popen):
    command = ["bash", str(ROOT / "scripts" / "run_distributed_cpu.sh"), "2", CONFIG, f"data.path={data}",
               f"train.output_dir={out}", f"data.batch_size={PER_RANK_BATCH}", *SAME_WORK, *sets]
    return subprocess.Popen(command, cwd=ROOT, env=launcher_env(free_port()), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def fingerprints(out: Path) -> list:
    return [re.findall(r"parameter fingerprint (.+)", (out / "logs" / f"worker_{r}.log").read_text())
            for r in (0, 1)]


def losses(out: Path) -> list:
    return [float(line.split('"loss": ')[1].split(",")[0])
            for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.e2e
@pytest.mark.distributed
def test_two_workers_equal_one_process_over_the_global_batch_and_resume(prepared_complete, tmp_path):
    dist, single = tmp_path / "dist", tmp_path / "single"
    job = cpu_launch(prepared_complete, dist, "train.max_steps=3")
    _, err = job.communicate(timeout=400)
    assert job.returncode == 0, err[-3000:]
    first = fingerprints(dist)
    assert len(first[0]) == 1 and first[0] == first[1]  # both replicas hold the same parameters
    assert sorted(p.name for p in dist.iterdir()) == ["config.yaml", "data_settings", "logs", "step_00000003.ckpt",
                                                      "step_00000003.ckpt.sha256", "train_log.jsonl"]

    job = cpu_launch(prepared_complete, dist, "train.max_steps=4")  # the same command resumes, on every rank
    _, err = job.communicate(timeout=400)
    assert job.returncode == 0, err[-3000:]
    for rank in (0, 1):
        assert "resumed from" in (dist / "logs" / f"worker_{rank}.log").read_text()
    second = fingerprints(dist)
    assert second[0] == second[1] and second[0][-1] != first[0][-1]

    done = subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", CONFIG, "--set",
                           f"data.path={prepared_complete}", f"train.output_dir={single}",
                           f"data.batch_size={2 * PER_RANK_BATCH}", *SAME_WORK, "train.max_steps=4"],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "GLOG_v": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    np.testing.assert_allclose(losses(dist), losses(single), rtol=1e-5)  # logged: the mean over the ranks
    a = ms.load_checkpoint(str(dist / "step_00000004.ckpt"))
    b = ms.load_checkpoint(str(single / "step_00000004.ckpt"))
    init = ms.load_checkpoint(str(dist / "step_00000003.ckpt"))
    moved = max(np.abs(b[k].asnumpy() - init[k].asnumpy()).max() for k in b if k.startswith("net."))
    apart = max(np.abs(a[k].asnumpy() - b[k].asnumpy()).max() for k in b if k.startswith("net."))
    assert moved > 1e-4 and apart < 1e-6, (moved, apart)


@pytest.mark.e2e
@pytest.mark.distributed
def test_a_worker_that_dies_fails_the_job_and_its_log_is_shown(prepared_complete, tmp_path):
    out = tmp_path / "crash"
    job = cpu_launch(prepared_complete, out, "train.max_steps=100000", "train.save_every=2")
    log = out / "logs" / "worker_1.log"
    deadline = time.monotonic() + 300
    while not (log.exists() and "step 3/" in log.read_text()):  # after the step-2 checkpoint
        assert job.poll() is None and time.monotonic() < deadline, "the job never reached step 3"
        time.sleep(1)
    os.kill(worker_pid(job.pid, rank=1), 9)
    killed = time.monotonic()
    _, err = job.communicate(timeout=300)
    assert job.returncode == 1
    assert time.monotonic() - killed < 150  # within the cluster timeout (120 s), no hang
    assert "error: the distributed job failed" in err
    assert f"lines of {log}" in err
    # the same command resumes every rank from the last checkpoint the job wrote
    last = sorted(out.glob("step_*.ckpt"))[-1]
    job = cpu_launch(prepared_complete, out, f"train.max_steps={int(last.stem[5:]) + 1}", "train.save_every=2")
    _, err = job.communicate(timeout=400)
    assert job.returncode == 0, err[-3000:]
    for rank in (0, 1):
        assert f"resumed from {last}" in (out / "logs" / f"worker_{rank}.log").read_text()


def worker_pid(launcher: int, rank: int) -> int:
    """The msrun worker process with RANK_ID=rank among the launcher's descendants."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"MS_ROLE=MS_WORKER" in env and f"RANK_ID={rank}".encode() in env and descends(int(proc.name), launcher):
            return int(proc.name)
    raise AssertionError(f"no worker process of rank {rank}")


def descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    return False


def test_config_values_for_shell_scripts(capsys):
    """train.py --show: what the launchers read from a recipe, a task's own section and an earlier version's key
    included."""
    from train import main as train_main
    assert train_main(["--config", CONFIG, "--set", "train.output_dir=/tmp/x", "--show", "train.output_dir"]) == 0
    assert capsys.readouterr().out.strip() == "/tmp/x"
    assert train_main(["--config", CONFIG, "--show", "caption.inputs"]) == 0
    assert capsys.readouterr().out.strip() == "['image', 'audio', 'image+audio']"
    assert train_main(["--config", CONFIG, "--show", "loss.label_smoothing"]) == 0
    assert capsys.readouterr().out.strip() == "0.1"
    assert train_main(["--config", CONFIG, "--show", "train.nothing"]) == 2
    assert "no key 'train.nothing'" in capsys.readouterr().err
