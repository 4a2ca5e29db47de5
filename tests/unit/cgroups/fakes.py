"""Fake cgroup trees in a temporary directory: each control file holds what a
fresh cgroup's file holds on Linux 6.x, so controllers and managers run
against them unchanged. Writes replace a file's contents (the kernel merges
keyed files such as io.max; tests read `Writer.written` for those)."""

from __future__ import annotations

import os

V1_FILES: dict[str, dict[str, str]] = {
    "memory": {
        "memory.limit_in_bytes": "9223372036854771712",
        "memory.memsw.limit_in_bytes": "9223372036854771712",
        "memory.soft_limit_in_bytes": "9223372036854771712",
        "memory.kmem.limit_in_bytes": "9223372036854771712",
        "memory.kmem.tcp.limit_in_bytes": "9223372036854771712",
        "memory.swappiness": "60",
        "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2",
        "memory.use_hierarchy": "1",
        "memory.usage_in_bytes": "4096000",
        "memory.max_usage_in_bytes": "5000000",
        "memory.failcnt": "3",
        "memory.memsw.usage_in_bytes": "4096000",
        "memory.stat": "cache 100\nrss 200\ntotal_cache 1000\ntotal_rss 2000\n",
        "cgroup.event_control": "",
    },
    "cpu": {
        "cpu.shares": "1024",
        "cpu.cfs_period_us": "100000",
        "cpu.cfs_quota_us": "-1",
        "cpu.cfs_burst_us": "0",
        "cpu.rt_period_us": "1000000",
        "cpu.rt_runtime_us": "0",
        "cpu.idle": "0",
        "cpu.stat": "nr_periods 10\nnr_throttled 4\nthrottled_time 12345\n",
    },
    "cpuacct": {
        "cpuacct.usage": "5000",
        "cpuacct.usage_percpu": "3000 2000 ",
        "cpuacct.usage_percpu_sys": "1000 500 ",
        "cpuacct.usage_percpu_user": "2000 1500 ",
        "cpuacct.usage_user": "3500",
        "cpuacct.usage_sys": "1500",
    },
    "cpuset": {"cpuset.cpus": "0-1", "cpuset.mems": "0"},
    "pids": {"pids.max": "max", "pids.current": "3", "pids.events": "max 7", "pids.peak": "5"},
    "blkio": {
        "blkio.weight": "500",
        "blkio.weight_device": "",
        "blkio.throttle.read_bps_device": "",
        "blkio.throttle.write_bps_device": "",
        "blkio.throttle.read_iops_device": "",
        "blkio.throttle.write_iops_device": "",
        "blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 512\nTotal 4608",
        "blkio.throttle.io_serviced_recursive": "8:0 Read 2\n8:0 Write 1\nTotal 3",
    },
    "hugetlb": {
        "hugetlb.2MB.limit_in_bytes": "9223372036854771712",
        "hugetlb.2MB.rsvd.limit_in_bytes": "9223372036854771712",
        "hugetlb.2MB.usage_in_bytes": "0",
        "hugetlb.2MB.max_usage_in_bytes": "0",
        "hugetlb.2MB.failcnt": "1",
    },
    "net_cls": {"net_cls.classid": "0"},
    "net_prio": {"net_prio.ifpriomap": "lo 0"},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm"},
    "freezer": {"freezer.state": "THAWED"},
    "rdma": {"rdma.max": ""},
    "name=systemd": {},
}

COMMON_V1 = {"cgroup.procs": "", "tasks": "", "notify_on_release": "0"}

V2_FILES: dict[str, str] = {
    "cgroup.procs": "",
    "cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma",
    "cgroup.subtree_control": "",
    "cgroup.freeze": "0",
    "cgroup.events": "populated 1\nfrozen 0",
    "cgroup.kill": "",
    "cpu.weight": "100",
    "cpu.max": "max 100000",
    "cpu.max.burst": "0",
    "cpu.idle": "0",
    "cpu.stat": "usage_usec 5\nuser_usec 3\nsystem_usec 2\nnr_periods 10\nnr_throttled 4\n"
    "throttled_usec 12\n",
    "cpu.pressure": "some avg10=1.50 avg60=0.00 avg300=0.00 total=42\n"
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=7",
    "cpuset.cpus": "",
    "cpuset.mems": "",
    "cpuset.cpus.effective": "0-1",
    "cpuset.mems.effective": "0",
    "memory.max": "max",
    "memory.low": "0",
    "memory.swap.max": "max",
    "memory.current": "4096000",
    "memory.peak": "5000000",
    "memory.swap.current": "0",
    "memory.stat": "anon 2000\nfile 1000\n",
    "memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\noom_group_kill 0",
    "memory.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0",
    "pids.max": "max",
    "pids.current": "3",
    "pids.peak": "5",
    "pids.events": "max 7",
    "io.weight": "default 100",
    "io.max": "",
    "io.stat": "8:0 rbytes=4096 wbytes=512 rios=2 wios=1 dbytes=0 dios=0",
    "hugetlb.2MB.max": "max",
    "hugetlb.2MB.rsvd.max": "max",
    "hugetlb.2MB.current": "0",
    "hugetlb.2MB.events": "max 1",
    "rdma.max": "",
}


def populate(d: str, files: dict[str, str]) -> str:
    os.makedirs(d, exist_ok=True)
    for name, content in files.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(content + ("\n" if content and not content.endswith("\n") else ""))
    return d


def v1_tree(root: str, cgroup: str = "c1", hybrid: bool = False) -> dict[str, str]:
    """hierarchy key -> cgroup directory, as `CgroupV1` takes them."""
    paths = {}
    for key, files in V1_FILES.items():
        mnt = key[5:] if key.startswith("name=") else key
        paths[key] = populate(os.path.join(root, mnt, cgroup), {**COMMON_V1, **files})
    if hybrid:
        unified = {
            k: v
            for k, v in V2_FILES.items()
            if k.startswith(("cgroup.", "cpu.stat", "cpu.pressure", "memory.pressure"))
        }
        paths["unified"] = populate(os.path.join(root, "unified", cgroup), unified)
    return paths


def v2_tree(root: str, cgroup: str = "c1") -> str:
    populate(
        root,
        {
            "cgroup.controllers": V2_FILES["cgroup.controllers"],
            "cgroup.subtree_control": "",
            "cgroup.procs": "",
        },
    )
    return populate(os.path.join(root, cgroup), V2_FILES)


def read(d: str, name: str) -> str:
    with open(os.path.join(d, name)) as f:
        return f.read().strip()
