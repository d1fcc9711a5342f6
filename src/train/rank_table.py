"""HCCL rank tables for Ascend 910 data parallelism: write one for this machine, validate one before a launch.

    python -m src.train.rank_table write --devices 8 --out rank_table_8pcs.json [--server-ip IP] [--hccn /etc/hccn.conf]
                                         [--device-ips IP ...]   (instead of --hccn)
    python -m src.train.rank_table check rank_table_8pcs.json --devices 8
    python -m src.train.rank_table ranks rank_table_8pcs.json [--server IP]    (prints "rank_id device_id" lines)

The format is MindSpore's version 1.0 table: one entry per server, each listing its devices with device_id (the chip
on that server), device_ip (its NIC, from /etc/hccn.conf: `address_<id>=...`) and rank_id (0..N-1 over the job).
Every problem is reported with the file and the entry it was found in, before anything is launched.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import sys
from pathlib import Path
from typing import Dict, List, Optional

from src.commands import run_main
from src.files import write_text_atomic


class RankTableError(ValueError):
    pass


def read_device_ips(hccn_conf: str) -> Dict[int, str]:
    """device id -> NIC address from an hccn.conf (`address_0=192.98.92.100` lines)."""
    path = Path(hccn_conf)
    if not path.is_file():
        raise RankTableError(f"{hccn_conf} not found: pass --device-ips, or run on an Ascend server (hccn_tool "
                             "writes it)")
    ips = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        key, _, value = line.strip().partition("=")
        if key.startswith("address_"):
            try:
                ips[int(key[len("address_"):])] = str(ipaddress.ip_address(value.strip()))
            except ValueError:
                raise RankTableError(f"{hccn_conf}:{n}: '{line.strip()}' is not address_<device>=<IP>") from None
    return ips


def build_rank_table(server_ip: str, device_ips: List[str]) -> dict:
    """A one-server table over devices 0..len(device_ips)-1, rank i on device i."""
    devices = [{"device_id": str(i), "device_ip": ip, "rank_id": str(i)} for i, ip in enumerate(device_ips)]
    return {"version": "1.0", "server_count": "1", "status": "completed",
            "server_list": [{"server_id": server_ip, "device": devices, "host_nic_ip": "reserve"}]}


def check_rank_table(path: str, device_num: Optional[int] = None) -> dict:
    """Validate a rank table file; returns it. Raises RankTableError naming the file and the entry at fault."""
    p = Path(path)
    if not p.is_file():
        raise RankTableError(f"rank table {path} not found")
    try:
        table = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise RankTableError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(table, dict):
        raise RankTableError(f"{path}: the top level must be an object")
    if table.get("status") != "completed":
        raise RankTableError(f"{path}: status is {table.get('status')!r}, expected 'completed'")
    servers = table.get("server_list")
    if not isinstance(servers, list) or not servers:
        raise RankTableError(f"{path}: server_list is missing or empty")
    if str(table.get("server_count", len(servers))) != str(len(servers)):
        raise RankTableError(f"{path}: server_count {table.get('server_count')} but {len(servers)} servers listed")
    ranks = []
    for s, server in enumerate(servers):
        where = f"{path}: server_list[{s}]"
        devices = server.get("device") if isinstance(server, dict) else None
        if not isinstance(devices, list) or not devices:
            raise RankTableError(f"{where}: no device list")
        seen_ids, seen_ips = set(), set()
        for d, device in enumerate(devices):
            at = f"{where}.device[{d}]"
            missing = [k for k in ("device_id", "device_ip", "rank_id") if k not in device]
            if missing:
                raise RankTableError(f"{at}: missing {', '.join(missing)}")
            try:
                ipaddress.ip_address(str(device["device_ip"]))
                device_id, rank_id = int(device["device_id"]), int(device["rank_id"])
            except ValueError:
                raise RankTableError(f"{at}: device_id and rank_id must be integers and device_ip an IP address, "
                                     f"got {device}") from None
            if device_id in seen_ids or device["device_ip"] in seen_ips:
                raise RankTableError(f"{at}: device {device_id} / {device['device_ip']} is listed twice")
            seen_ids.add(device_id)
            seen_ips.add(device["device_ip"])
            ranks.append(rank_id)
    if sorted(ranks) != list(range(len(ranks))):
        raise RankTableError(f"{path}: rank ids must be 0..{len(ranks) - 1} once each, got {sorted(ranks)}")
    if device_num is not None and device_num != len(ranks):
        raise RankTableError(f"{path} lists {len(ranks)} devices but DEVICE_NUM is {device_num}")
    return table


def server_ranks(table: dict, path: str, server: Optional[str] = None) -> List[tuple]:
    """(rank_id, device_id) of the processes one server starts: the only server's, or the one whose server_id is
    `server`."""
    servers = table["server_list"]
    if server is None:
        if len(servers) > 1:
            raise RankTableError(f"{path} lists {len(servers)} servers: say which one this is (--server / SERVER_ID)")
        chosen = servers[0]
    else:
        matches = [s for s in servers if s.get("server_id") == server]
        if not matches:
            known = ", ".join(str(s.get("server_id")) for s in servers)
            raise RankTableError(f"{path}: no server '{server}' (listed: {known})")
        chosen = matches[0]
    return sorted((int(d["rank_id"]), int(d["device_id"])) for d in chosen["device"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m src.train.rank_table", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write a one-server rank table")
    w.add_argument("--devices", type=int, required=True)
    w.add_argument("--out", required=True)
    w.add_argument("--server-ip", default=None, help="default: this host's address")
    w.add_argument("--hccn", default="/etc/hccn.conf")
    w.add_argument("--device-ips", nargs="*", default=None, help="instead of reading --hccn")
    c = sub.add_parser("check", help="validate a rank table")
    c.add_argument("table")
    c.add_argument("--devices", type=int, default=None, help="the device count the launch will use")
    r = sub.add_parser("ranks", help='print "rank_id device_id" for each process one server starts')
    r.add_argument("table")
    r.add_argument("--server", default=None, help="server_id of this server (needed when the table lists several)")
    args = ap.parse_args(argv)
    return run_main(lambda: _run(args), (RankTableError,))


def _run(args) -> int:
    if args.cmd == "ranks":
        for rank, device in server_ranks(check_rank_table(args.table), args.table, args.server):
            print(rank, device)
        return 0
    if args.cmd == "check":
        table = check_rank_table(args.table, args.devices)
        count = sum(len(s["device"]) for s in table["server_list"])
        print(f"{args.table}: {len(table['server_list'])} server(s), {count} devices: ok")
        return 0
    if args.devices < 1:
        raise RankTableError("--devices must be at least 1")
    ips = args.device_ips if args.device_ips is not None else None
    if ips is None:
        known = read_device_ips(args.hccn)
        absent = [i for i in range(args.devices) if i not in known]
        if absent:
            raise RankTableError(f"{args.hccn} has no address for device(s) {absent}")
        ips = [known[i] for i in range(args.devices)]
    if len(ips) != args.devices:
        raise RankTableError(f"{len(ips)} device IPs for {args.devices} devices")
    server_ip = args.server_ip or socket.gethostbyname(socket.gethostname())
    table = build_rank_table(server_ip, ips)
    write_text_atomic(args.out, json.dumps(table, indent=2) + "\n")
    check_rank_table(args.out, args.devices)
    print(f"wrote {args.out}: {args.devices} devices on {server_ip}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
