"""Rank tables: written from an hccn.conf, and every malformed table refused with the file and entry named."""
import json

import pytest

from src.train.rank_table import RankTableError, build_rank_table, check_rank_table, main, read_device_ips


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
