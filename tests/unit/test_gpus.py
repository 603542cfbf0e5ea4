"""The NVML translation. This machine has no GPU, so a stand-in NVML module feeds it here;
test_real_nvml runs the real pynvml path wherever a GPU and driver are present."""

import types

import pytest

from cluster.gpus import GpuProbe


class FakeNVMLError(Exception):
    pass


def fake_nvml(*, init_error=None, unsupported=()):
    def maybe(name, value):
        def call(*_args):
            if name in unsupported:
                raise FakeNVMLError(f"{name} not supported")
            return value
        return call

    memory = types.SimpleNamespace(used=3 * 1024 * 1024 * 1024, total=80 * 1024 * 1024 * 1024, free=0)
    process = types.SimpleNamespace(pid=4242, usedGpuMemory=512 * 1024 * 1024)

    def init():
        if init_error:
            raise init_error

    return types.SimpleNamespace(
        NVMLError=FakeNVMLError,
        NVML_TEMPERATURE_GPU=0,
        nvmlInit=init,
        nvmlDeviceGetCount=lambda: 2,
        nvmlSystemGetCudaDriverVersion=maybe("cuda", 12040),
        nvmlDeviceGetHandleByIndex=lambda i: f"handle{i}",
        nvmlDeviceGetName=maybe("name", b"NVIDIA H100 80GB HBM3"),
        nvmlDeviceGetPciInfo=maybe("pci", types.SimpleNamespace(busId=b"00000000:18:00.0")),
        nvmlDeviceGetTemperature=maybe("temperature", 41),
        nvmlDeviceGetPerformanceState=maybe("pstate", 0),
        nvmlDeviceGetPowerUsage=maybe("power", 71234),
        nvmlDeviceGetEnforcedPowerLimit=maybe("cap", 700000),
        nvmlDeviceGetMemoryInfo=maybe("memory", memory),
        nvmlDeviceGetUtilizationRates=maybe("utilization", types.SimpleNamespace(gpu=37, memory=5)),
        nvmlDeviceGetComputeMode=maybe("mode", 0),
        nvmlDeviceGetComputeRunningProcesses=maybe("processes", [process]),
        nvmlSystemGetProcessName=maybe("pname", b"python3"),
    )


def test_translates_nvml_readings_into_contract_fields():
    gpus = GpuProbe(fake_nvml()).read("http://node:11337")
    assert len(gpus) == 2
    assert gpus[1] == {
        "id": "http://node:11337:1", "intraNodeId": 1, "name": "NVIDIA H100 80GB HBM3",
        "busId": "00000000:18:00.0", "temperature": 41.0, "performanceState": "P0",
        "powerUsage": 71.234, "powerCap": 700.0, "memoryUsage": 3072, "memoryTotal": 81920,
        "gpuUtilization": 37.0, "computeMode": "Default", "cudaVersion": "12.4",
        "processDetails": [{"pid": 4242, "processName": "python3", "memoryUsage": 512}],
    }


def test_unsupported_fields_are_null_not_invented():
    [gpu, _] = GpuProbe(fake_nvml(unsupported={"power", "cap", "temperature", "processes"})).read("http://n:1")
    assert gpu["powerUsage"] is None and gpu["powerCap"] is None and gpu["temperature"] is None
    assert gpu["processDetails"] == [] and gpu["name"] == "NVIDIA H100 80GB HBM3"


def test_no_driver_means_no_gpus_and_one_log_line(caplog):
    probe = GpuProbe(fake_nvml(init_error=FakeNVMLError("Driver Not Loaded")))
    caplog.set_level("INFO", logger="cluster.gpus")
    assert probe.read("http://n:1") == []
    assert probe.read("http://n:1") == []
    assert len([r for r in caplog.records if "NVML is not available" in r.getMessage()]) == 1


def test_real_nvml():
    """The real pynvml path: on a machine without a GPU it must report none and not crash."""
    pynvml = pytest.importorskip("pynvml")
    gpus = GpuProbe().read("http://n:1")
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except pynvml.NVMLError:
        count = 0
    assert len(gpus) == count
    for index, gpu in enumerate(gpus):
        assert gpu["id"] == f"http://n:1:{index}" and gpu["name"] and gpu["memoryTotal"] > 0
