"""The node record this peer reports about itself: host, resource usage (psutil) and GPUs."""

import os
import platform
import socket

import psutil

from registry import VERSION

from .gpus import GpuProbe
from registry.timestamps import format_ns


class SelfReport:
    def __init__(self, *, node_id, url, region, availability_zone, data_dir, gpu_probe=None):
        self._static = {
            "id": node_id,
            "url": url,
            "region": region,
            "availabilityZone": availability_zone,
            "hostname": socket.gethostname(),
            "os": f"{platform.system()} {platform.release()}",
            "cpuCount": psutil.cpu_count(logical=True) or 1,
            "bootTime": format_ns(int(psutil.boot_time() * 1_000_000_000)),
            "registryVersion": VERSION,
        }
        self._data_dir = data_dir
        self._gpus = gpu_probe or GpuProbe()
        # cpu_percent measures since its previous call; the first call only starts the clock.
        psutil.cpu_percent(interval=None)

    def record(self, raft_info):
        """A fresh node record; lastHeartbeat is stamped by the command that carries it."""
        return {
            **self._static,
            "usage": self._usage(),
            "gpus": self._gpus.read(self._static["url"]),
            "raft": raft_info,
        }

    def _usage(self):
        cores = self._static["cpuCount"]
        cpu_percent = float(psutil.cpu_percent(interval=None))
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage(self._data_dir if os.path.isdir(self._data_dir) else "/")
        return {
            # CPU in millicores: total is every logical core, used is the share busy since last report.
            "cpu": {"used": int(round(cores * 1000 * cpu_percent / 100)), "total": cores * 1000,
                    "percent": cpu_percent},
            "memory": {"used": int(memory.total - memory.available), "total": int(memory.total),
                       "percent": float(memory.percent)},
            # The disk that holds this peer's data directory: the one the registry can fill.
            "disk": {"used": int(disk.used), "total": int(disk.total), "percent": float(disk.percent)},
        }
