"""GPUs through NVML (the `pynvml` module of the nvidia-ml-py package).

No NVML library, no driver or no GPU: an empty list and one log line, never a crash. A field
a GPU does not support (power on some boards, say) is reported as null, not guessed.
"""

import logging

log = logging.getLogger(__name__)

_COMPUTE_MODES = {0: "Default", 1: "Exclusive_Thread", 2: "Prohibited", 3: "Exclusive_Process"}


class GpuProbe:
    def __init__(self, nvml=None):
        self._nvml = nvml
        self._initialised = False
        self._unavailable_logged = False

    def read(self, node_url):
        nvml = self._start()
        if nvml is None:
            return []
        try:
            count = nvml.nvmlDeviceGetCount()
        except Exception as error:
            self._log_unavailable(f"NVML could not count GPUs: {error}")
            return []
        cuda = self._field(nvml, lambda: _cuda_version(nvml.nvmlSystemGetCudaDriverVersion()))
        gpus = []
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
            except Exception as error:
                log.warning("NVML could not open GPU %d: %s", index, error)
                continue
            gpus.append(self._describe(nvml, handle, index, node_url, cuda))
        return gpus

    def _start(self):
        if self._initialised:
            return self._nvml
        try:
            if self._nvml is None:
                import pynvml as nvml
                self._nvml = nvml
            self._nvml.nvmlInit()
        except Exception as error:
            self._log_unavailable(f"no GPUs reported: NVML is not available here ({error})")
            self._nvml = None
            return None
        self._initialised = True
        return self._nvml

    def _log_unavailable(self, message):
        if not self._unavailable_logged:
            log.info(message)
            self._unavailable_logged = True

    def _describe(self, nvml, handle, index, node_url, cuda):
        get = lambda fn: self._field(nvml, fn)  # noqa: E731
        memory = get(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        power = get(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
        cap = get(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
        pstate = get(lambda: nvml.nvmlDeviceGetPerformanceState(handle))
        mode = get(lambda: nvml.nvmlDeviceGetComputeMode(handle))
        utilization = get(lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        return {
            "id": f"{node_url}:{index}",
            "intraNodeId": index,
            "name": get(lambda: _text(nvml.nvmlDeviceGetName(handle))),
            "busId": get(lambda: _text(nvml.nvmlDeviceGetPciInfo(handle).busId)),
            "temperature": get(lambda: float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))),
            "performanceState": None if pstate is None else f"P{int(pstate)}",
            "powerUsage": None if power is None else power / 1000.0,  # NVML reports milliwatts
            "powerCap": None if cap is None else cap / 1000.0,
            "memoryUsage": None if memory is None else memory.used // (1024 * 1024),
            "memoryTotal": None if memory is None else memory.total // (1024 * 1024),
            "gpuUtilization": None if utilization is None else float(utilization.gpu),
            "computeMode": None if mode is None else _COMPUTE_MODES.get(int(mode), str(mode)),
            "cudaVersion": cuda,
            "processDetails": self._processes(nvml, handle),
        }

    def _processes(self, nvml, handle):
        running = self._field(nvml, lambda: nvml.nvmlDeviceGetComputeRunningProcesses(handle)) or []
        details = []
        for process in running:
            used = getattr(process, "usedGpuMemory", None)
            details.append({
                "pid": int(process.pid),
                "processName": self._field(nvml, lambda: _text(nvml.nvmlSystemGetProcessName(process.pid))) or "",
                "memoryUsage": 0 if used is None else int(used) // (1024 * 1024),
            })
        return details

    @staticmethod
    def _field(nvml, read):
        try:
            return read()
        except Exception as error:  # NVMLError_NotSupported and friends
            if not isinstance(error, getattr(nvml, "NVMLError", Exception)):
                log.debug("unexpected error reading a GPU field: %r", error)
            return None


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _cuda_version(encoded):
    # NVML encodes CUDA 12.4 as 12040.
    return f"{encoded // 1000}.{(encoded % 1000) // 10}"
