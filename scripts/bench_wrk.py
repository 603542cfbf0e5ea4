"""The benchmark's load generator: wrk, one thread, Lua scripts in scripts/bench_lua/, with the CPU
of every process watched during each run (scripts/bench.py)."""

import json
import os
import re
import resource
import signal
import subprocess
import time

import bench_support
from bench_support import PROCESSES, StageError, cpu_seconds, log, system_busy_seconds


# -- the load generator -------------------------------------------------------------------------------

class Wrk:
    """wrk, one thread, a Lua script; the result of a run as a dict (see bench_lua/*.lua)."""

    def __init__(self, binary, token):
        self.binary = binary
        self.token = token
        self.own_pids = {os.getpid()}

    def run(self, url, *, connections, duration, script, script_args=(), watch_pids=(), auth=True,
            label="", stop_file=None, profile=None):
        command = [self.binary, "-t1", f"-c{connections}", f"-d{max(1, int(round(duration)))}s", "--timeout", "10s",
                   "-s", script]
        if auth and self.token:
            command += ["-H", f"Authorization: Bearer {self.token}"]
        command += [url, "--", *[str(a) for a in script_args]]
        # {name: pid} (or pids, named by themselves): each one's CPU is reported under its name.
        if not isinstance(watch_pids, dict):
            watch_pids = {str(pid): pid for pid in watch_pids}
        names = {pid: name for name, pid in watch_pids.items() if pid}
        watch_pids = list(names)
        busy_before = system_busy_seconds()
        watched_before = {pid: cpu_seconds([pid]) for pid in watch_pids}
        own_before = cpu_seconds(self.own_pids)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        load_before = os.getloadavg()[0]
        profiler = None
        if profile and bench_support.PY_SPY:
            # py-spy samples the server process, and its HTTP workers if it has them, while wrk drives it
            # (collapsed stacks, as text).
            profile_pid, profile_path = profile
            profiler = PROCESSES.add(subprocess.Popen(
                [bench_support.PY_SPY, "record", "--pid", str(profile_pid), "--duration", str(max(1, int(round(duration)))),
                 "--rate", "100", "--format", "raw", "--nonblocking", "--subprocesses", "--output", profile_path],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        started = time.monotonic()
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as popen:
            PROCESSES.add(popen)
            try:
                if stop_file:
                    # The Lua script writes stop_file once its quota is sent; wrk itself would sleep
                    # out the whole duration, so SIGINT ends it (it still prints its summary).
                    while popen.poll() is None and not os.path.exists(stop_file):
                        if time.monotonic() - started > duration + 60:
                            break
                        time.sleep(0.1)
                    if popen.poll() is None:
                        time.sleep(0.5)  # the responses in flight
                        popen.send_signal(signal.SIGINT)
                stdout, stderr = popen.communicate(timeout=duration + 60)
            except subprocess.TimeoutExpired:
                popen.kill()
                stdout, stderr = popen.communicate()
            finally:
                PROCESSES.stop_popen(popen)
        out = subprocess.CompletedProcess(command, popen.returncode, stdout, stderr)
        wall = time.monotonic() - started
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        watched = {pid: cpu_seconds([pid]) - before for pid, before in watched_before.items()}
        own = cpu_seconds(self.own_pids) - own_before
        busy = system_busy_seconds() - busy_before
        load_after = os.getloadavg()[0]
        if profiler is not None:
            try:
                profiler.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
            PROCESSES.stop_popen(profiler)
        match = re.search(r"^WRKJSON (\{.*\})$", out.stdout, re.M)
        if not match:
            raise StageError(f"wrk {label} gave no result (exit {out.returncode}): {out.stderr.strip()[-500:]} "
                             f"{out.stdout.strip()[-500:]}")
        raw = json.loads(match.group(1))
        seconds = raw["durationUs"] / 1e6
        wrk_cpu = (children_after.ru_utime + children_after.ru_stime
                   - children_before.ru_utime - children_before.ru_stime)
        errors = raw["errors"]
        socket_errors = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
        result = {
            "label": label,
            "url": url,
            "connections": connections,
            "seconds": round(seconds, 3),
            "requests": raw["requests"],
            "ok": raw["ok"],
            "failed": raw["non2xx"] + socket_errors,
            "non2xx": raw["non2xx"],
            "statusCodes": raw["codes"],
            "socketErrors": errors,
            "requestsPerSecond": round(raw["ok"] / seconds, 1) if seconds > 0 else 0.0,
            "p50Ms": raw["latencyUs"]["p50"] / 1000,
            "p90Ms": raw["latencyUs"]["p90"] / 1000,
            "p99Ms": raw["latencyUs"]["p99"] / 1000,
            "maxMs": raw["latencyUs"]["max"] / 1000,
            "bytesPerResponse": round(raw["bytes"] / raw["requests"]) if raw["requests"] else 0,
            # CPU in cores (seconds of CPU per second of wall time) of each watched process, of
            # wrk, and of everything else on the machine (other test runs disturb the numbers).
            "cpuCores": {names[pid]: round(used / wall, 2) for pid, used in watched.items()},
            "wrkCpuCores": round(wrk_cpu / wall, 2),
            "foreignCpuCores": round(max(0.0, busy - sum(watched.values()) - wrk_cpu - own) / wall, 2),
            "loadAverage1m": [round(load_before, 2), round(load_after, 2)],
        }
        log(f"  {label}: {result['requestsPerSecond']:.0f} req/s, p50 {result['p50Ms']:.2f} ms, "
            f"p99 {result['p99Ms']:.2f} ms, failed {result['failed']} of {raw['requests']}"
            f"{' (' + raw['codes'] + ')' if raw['codes'] else ''}; foreign CPU {result['foreignCpuCores']}")
        if raw["ok"] == 0:
            raise StageError(f"every request of {label} failed ({raw['requests']} requests, "
                             f"codes {raw['codes'] or '-'}, socket errors {errors})")
        return result
