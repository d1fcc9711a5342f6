"""Rank tables: written from an hccn.conf, and every malformed table refused with the file and entry named."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from src.train.rank_table import RankTableError, build_rank_table, check_rank_table, main, read_device_ips

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, table, name="table.json"):
    path = tmp_path / name
    path.write_text(table if isinstance(table, str) else json.dumps(table))
    return str(path)


def test_write_from_hccn_conf_then_check(tmp_path, capsys):
    conf = tmp_path / "hccn.conf"
    conf.write_text("".join(f"address_{i}=192.98.92.{100 + i}\nnetdetect_{i}=192.98.92.1\n" for i in range(4)))
    assert read_device_ips(str(conf)) == {i: f"192.98.92.{100 + i}" for i in range(4)}
    out = tmp_path / "rank_table_4pcs.json"
    assert main(["write", "--devices", "4", "--out", str(out), "--server-ip", "10.0.0.1", "--hccn", str(conf)]) == 0
    table = json.loads(out.read_text())
    devices = table["server_list"][0]["device"]
    assert [d["rank_id"] for d in devices] == ["0", "1", "2", "3"] and devices[2]["device_ip"] == "192.98.92.102"
    assert main(["check", str(out), "--devices", "4"]) == 0
    assert main(["write", "--devices", "8", "--out", str(tmp_path / "x.json"), "--hccn", str(conf)]) == 2
    assert "no address for device(s) [4, 5, 6, 7]" in capsys.readouterr().err


def good():
    return build_rank_table("10.0.0.1", ["192.168.0.1", "192.168.0.2"])


@pytest.mark.parametrize("corrupt, message", [
    (lambda t: "{not json", "not valid JSON"),
    (lambda t: t.update(status="initializing"), "status"),
    (lambda t: t.update(server_list=[]), "server_list is missing or empty"),
    (lambda t: t["server_list"][0]["device"][1].pop("device_ip") and None,
     r"server_list\[0\].device\[1\]: missing device_ip"),
    (lambda t: t["server_list"][0]["device"][1].update(device_ip="300.1.1.1"), "must be integers"),
    (lambda t: t["server_list"][0]["device"][1].update(rank_id="5"), "rank ids must be 0..1"),
    (lambda t: t["server_list"][0]["device"][1].update(device_id="0"), "listed twice"),
    (lambda t: t.update(server_count="2"), "server_count 2 but 1 servers"),
])
def test_malformed_tables_are_refused(tmp_path, corrupt, message):
    table = good()
    changed = corrupt(table)
    path = write(tmp_path, changed if isinstance(changed, str) else table)
    with pytest.raises(RankTableError, match=message):
        check_rank_table(path)


def test_device_count_must_agree_and_the_file_must_exist(tmp_path):
    path = write(tmp_path, good())
    assert check_rank_table(path, 2)["server_count"] == "1"
    with pytest.raises(RankTableError, match="lists 2 devices but DEVICE_NUM is 8"):
        check_rank_table(path, 8)
    with pytest.raises(RankTableError, match="not found"):
        check_rank_table(str(tmp_path / "missing.json"))


def test_ranks_of_one_server(tmp_path, capsys):
    two_servers = good()
    second = build_rank_table("10.0.0.2", ["192.168.1.1", "192.168.1.2"])["server_list"][0]
    for d in second["device"]:
        d["rank_id"] = str(int(d["rank_id"]) + 2)
    two_servers["server_list"].append(second)
    two_servers["server_count"] = "2"
    path = write(tmp_path, two_servers)
    assert main(["ranks", path, "--server", "10.0.0.2"]) == 0
    assert capsys.readouterr().out.split("\n")[:2] == ["2 0", "3 1"]
    assert main(["ranks", path]) == 2
    assert "lists 2 servers: say which one" in capsys.readouterr().err
    assert main(["ranks", path, "--server", "10.9.9.9"]) == 2
    assert "no server '10.9.9.9' (listed: 10.0.0.1, 10.0.0.2)" in capsys.readouterr().err


@pytest.mark.parametrize("table, devices, message", [
    ("missing.json", "2", "rank table .*missing.json not found"),
    ("table.json", "8", "lists 2 devices but DEVICE_NUM is 8"),
    ("table.json", "two", "DEVICE_NUM must be a positive integer"),
])
def test_ascend_launcher_refuses_a_bad_table_before_starting(tmp_path, table, devices, message):
    """Nothing is started (no log directory) when the table or the device count is wrong."""
    write(tmp_path, good())
    out = tmp_path / "run"
    done = subprocess.run(["bash", str(ROOT / "scripts" / "run_distributed_ascend.sh"), str(tmp_path / table),
                           devices, str(ROOT / "config" / "pretrain_tiny.yaml"), f"train.output_dir={out}"],
                          capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHON": sys.executable})
    assert done.returncode == 2
    assert re.search(message, done.stderr), done.stderr
    assert not out.exists()
