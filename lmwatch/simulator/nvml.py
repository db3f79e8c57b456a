"""A stand-in for the `pynvml` module (nvidia-ml-py) with GPUs that do not exist.

Two uses: tests put it in place of `pynvml` (CI has no GPU), and `sampling.gpu: simulated` lets a
user try the GPU metrics and dashboards without one. It mirrors the parts of the real module that
lmwatch uses, with the real behaviour: `NVMLError` and its per-code subclasses generated the way
pynvml generates them (`NVMLError(3)` is an `NVMLError_NotSupported` with `.value == 3`), calls
before `nvmlInit` fail with `NVMLError_Uninitialized`, power in milliwatts, energy in millijoules,
clocks in MHz, utilization in percent, ctypes structs for memory and utilization, friendly objects
with `.pid` and `.usedGpuMemory` for processes. A card can refuse fields (`NotSupported`, as
consumer cards do for fan or energy) and a GPU can fall off the bus between two calls (`GpuIsLost`).
"""

from __future__ import annotations

import ctypes
import math
import string
import sys
import time
import types
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

GIB = 1024**3
MIB = 1024**2

# --- constants: the same names and values as pynvml ---------------------------------------------

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_ALREADY_INITIALIZED = 5
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_INSUFFICIENT_POWER = 8
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_IRQ_ISSUE = 11
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_CORRUPTED_INFOROM = 14
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_OPERATING_SYSTEM = 17
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_IN_USE = 19
NVML_ERROR_MEMORY = 20
NVML_ERROR_NO_DATA = 21
NVML_ERROR_VGPU_ECC_NOT_SUPPORTED = 22
NVML_ERROR_INSUFFICIENT_RESOURCES = 23
NVML_ERROR_FREQ_NOT_SUPPORTED = 24
NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25
NVML_ERROR_DEPRECATED = 26
NVML_ERROR_NOT_READY = 27
NVML_ERROR_GPU_NOT_FOUND = 28
NVML_ERROR_INVALID_STATE = 29
NVML_ERROR_RESET_TYPE_NOT_SUPPORTED = 30
NVML_ERROR_UNKNOWN = 999

NVML_TEMPERATURE_GPU = 0
NVML_TEMPERATURE_GPU_MAX = 1
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_CLOCK_VIDEO = 3


# --- errors: generated per code exactly like pynvml's _extractNVMLErrorsAsClasses ---------------


class NVMLError(Exception):
    _valClassMapping: ClassVar[Mapping[int, type[NVMLError]]] = types.MappingProxyType({})
    """Code -> its subclass, filled once at import (below), as pynvml does."""
    _errcode_to_string: ClassVar[dict[int, str]] = {
        NVML_ERROR_UNINITIALIZED: "Uninitialized",
        NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
        NVML_ERROR_NOT_SUPPORTED: "Not Supported",
        NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
        NVML_ERROR_ALREADY_INITIALIZED: "Already Initialized",
        NVML_ERROR_NOT_FOUND: "Not Found",
        NVML_ERROR_INSUFFICIENT_SIZE: "Insufficient Size",
        NVML_ERROR_INSUFFICIENT_POWER: "Insufficient External Power",
        NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
        NVML_ERROR_TIMEOUT: "Timeout",
        NVML_ERROR_IRQ_ISSUE: "Interrupt Request Issue",
        NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
        NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
        NVML_ERROR_CORRUPTED_INFOROM: "Corrupted infoROM",
        NVML_ERROR_GPU_IS_LOST: "GPU is lost",
        NVML_ERROR_RESET_REQUIRED: "GPU requires restart",
        NVML_ERROR_OPERATING_SYSTEM: "The operating system has blocked the request.",
        NVML_ERROR_LIB_RM_VERSION_MISMATCH: "RM has detected an NVML/RM version mismatch.",
        NVML_ERROR_MEMORY: "Insufficient Memory",
        NVML_ERROR_UNKNOWN: "Unknown Error",
    }
    value: int

    def __new__(cls, value: int) -> NVMLError:
        if cls is NVMLError:
            cls = NVMLError._valClassMapping.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __str__(self) -> str:
        return self._errcode_to_string.get(self.value, f"NVML Error with code {self.value}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NVMLError) and self.value == other.value

    __hash__ = Exception.__hash__


class NVMLLibraryMismatchError(Exception):
    pass


if TYPE_CHECKING:

    class _CodedError(NVMLError):
        """What the generated subclasses look like to a type checker: built without a value."""

        def __new__(cls, *args: Any) -> _CodedError: ...


# The subclasses lmwatch and its tests name; all of them are generated below.
NVMLError_Uninitialized: type[_CodedError]
NVMLError_InvalidArgument: type[_CodedError]
NVMLError_NotSupported: type[_CodedError]
NVMLError_NoPermission: type[_CodedError]
NVMLError_DriverNotLoaded: type[_CodedError]
NVMLError_LibraryNotFound: type[_CodedError]
NVMLError_GpuIsLost: type[_CodedError]
NVMLError_LibRmVersionMismatch: type[_CodedError]


def _extract_errors_as_classes() -> None:
    module = sys.modules[__name__]
    classes: dict[int, type[NVMLError]] = {}
    for err_name in [n for n in dir(module) if n.startswith("NVML_ERROR_")]:
        class_name = "NVMLError_" + string.capwords(err_name.replace("NVML_ERROR_", ""), "_").replace("_", "")
        err_val = getattr(module, err_name)

        def gen_new(val: int) -> Callable[..., NVMLError]:
            def new(typ: type[NVMLError], *args: Any) -> NVMLError:
                return NVMLError.__new__(typ, val)

            return new

        new_error_class = type(class_name, (NVMLError,), {"__new__": gen_new(err_val)})
        new_error_class.__module__ = __name__
        setattr(module, class_name, new_error_class)
        classes[err_val] = new_error_class
    NVMLError._valClassMapping = types.MappingProxyType(classes)


_extract_errors_as_classes()


def nvmlExceptionClass(nvmlErrorCode: int) -> type[NVMLError]:
    if nvmlErrorCode not in NVMLError._valClassMapping:
        raise ValueError(f"nvmlErrorCode {nvmlErrorCode} is not valid")
    return NVMLError._valClassMapping[nvmlErrorCode]


# --- structs: what the real functions return ----------------------------------------------------


class c_nvmlMemory_t(ctypes.Structure):
    _fields_ = (("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong))


class c_nvmlUtilization_t(ctypes.Structure):
    _fields_ = (("gpu", ctypes.c_uint), ("memory", ctypes.c_uint))


class nvmlFriendlyObject:
    def __init__(self, dictionary: Mapping[str, Any]) -> None:
        for key, value in dictionary.items():
            setattr(self, key, value)

    def __str__(self) -> str:
        return str(self.__dict__)


@dataclass(frozen=True)
class _Handle:
    """An opaque device handle (pynvml's is a ctypes pointer)."""

    index: int


# --- the fake GPUs -------------------------------------------------------------------------------

FEATURES = (
    "utilization",
    "memory",
    "temperature",
    "power",
    "power_limit",
    "energy",
    "clock_sm",
    "clock_mem",
    "fan",
    "processes",
)
"""Names for `FakeGpu.unsupported`: each one makes the matching call raise NotSupported."""


@dataclass
class FakeGpu:
    """One fake GPU; change its fields between samples to script a scenario."""

    name: str = "NVIDIA RTX A6000"
    uuid: str = ""
    memory_total: int = 48 * GIB
    memory_reserved: int = 512 * MIB
    """Memory in use by the driver and processes not listed below."""
    utilization_gpu: int = 37
    utilization_memory: int = 21
    temperature: int = 54
    power_usage_mw: int = 123_456
    power_limit_mw: int = 300_000
    energy_mj: int = 987_654_321
    sm_clock_mhz: int = 1_410
    mem_clock_mhz: int = 8_001
    fan_percent: int = 41
    unsupported: set[str] = field(default_factory=set)
    compute_processes: list[tuple[int, int | None]] = field(default_factory=list)
    """(pid, bytes or None) of CUDA processes."""
    graphics_processes: list[tuple[int, int | None]] = field(default_factory=list)
    lost: bool = False
    """Every call about this GPU raises GpuIsLost (it fell off the bus)."""
    lose_after: int | None = None
    """Calls about this GPU that still succeed before it is lost (a GPU lost in mid-sample)."""

    @classmethod
    def consumer(cls, **changes: Any) -> FakeGpu:
        """A consumer card that reports neither fan speed nor energy."""
        values: dict[str, Any] = {
            "name": "NVIDIA GeForce RTX 3060",
            "memory_total": 12 * GIB,
            "power_limit_mw": 170_000,
            "power_usage_mw": 31_250,
            "unsupported": {"fan", "energy"},
        }
        values.update(changes)
        return cls(**values)

    @property
    def memory_used(self) -> int:
        held: dict[int, int] = {}  # a process listed as compute and graphics user holds its memory once
        for pid, used in [*self.compute_processes, *self.graphics_processes]:
            held[pid] = max(held.get(pid, 0), used or 0)
        return min(self.memory_total, self.memory_reserved + sum(held.values()))


def simulated_gpus() -> list[FakeGpu]:
    """The two GPUs of `sampling.gpu: simulated`; every field supported so every series shows."""
    return [
        FakeGpu(
            name="NVIDIA RTX 6000 Ada Generation",
            uuid="GPU-5a7c0e59-3c4d-4f0e-9b1a-000000000000",
            memory_total=48 * GIB,
            power_limit_mw=300_000,
        ),
        FakeGpu(
            name="NVIDIA GeForce RTX 4090",
            uuid="GPU-5a7c0e59-3c4d-4f0e-9b1a-000000000001",
            memory_total=24 * GIB,
            power_limit_mw=450_000,
        ),
    ]


class FakeNvml(types.ModuleType):
    """The fake `pynvml` module. `sys.modules["pynvml"] = FakeNvml(...)` makes `import pynvml` use it."""

    def __init__(
        self,
        gpus: Sequence[FakeGpu] | None = None,
        *,
        driver_version: str = "550.54.15",
        init_error: int | None = None,
        dynamic: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("pynvml", "A fake pynvml (lmwatch.simulator.nvml).")
        module = sys.modules[__name__]
        for name in dir(module):
            if name.startswith(("NVML_", "NVMLError", "c_nvml")) or name in (
                "NVMLLibraryMismatchError",
                "nvmlExceptionClass",
                "nvmlFriendlyObject",
            ):
                setattr(self, name, getattr(module, name))
        self.gpus: list[FakeGpu] = list(gpus) if gpus is not None else [FakeGpu(), FakeGpu.consumer()]
        for index, gpu in enumerate(self.gpus):
            if not gpu.uuid:
                gpu.uuid = f"GPU-00000000-0000-4000-8000-{index:012d}"
        self.driver_version = driver_version
        self.init_error = init_error
        """An NVML error code nvmlInit raises (e.g. NVML_ERROR_DRIVER_NOT_LOADED); None = it works."""
        self.fail_with: int | None = None
        """An NVML error code every call raises, nvmlInit included (the driver was unloaded)."""
        self.dynamic = dynamic
        """Make the figures move with time, the way a busy GPU's do (the simulated mode)."""
        self.calls: Counter[str] = Counter()
        self._clock = clock
        self._refcount = 0
        self._last_tick: float | None = None

    @classmethod
    def simulated(cls, clock: Callable[[], float] = time.monotonic) -> FakeNvml:
        return cls(simulated_gpus(), driver_version="simulated", dynamic=True, clock=clock)

    # --- scripting -------------------------------------------------------------------------------

    def place_processes(self, pids: Iterable[int] | Mapping[int, int], bytes_each: int = 6 * GIB) -> None:
        """Give each PID GPU memory, on the GPUs in turn (the simulated backends): a mapping's own
        figure per PID (what its loaded models hold), else `bytes_each`."""
        for gpu in self.gpus:
            gpu.compute_processes = []
        if not self.gpus:
            return
        sizes = pids if isinstance(pids, Mapping) else dict.fromkeys(pids, bytes_each)
        for n, (pid, size) in enumerate(sizes.items()):  # a process serving two backends counts once
            gpu = self.gpus[n % len(self.gpus)]
            gpu.compute_processes.append((pid, min(size, gpu.memory_total - gpu.memory_reserved)))

    @property
    def initialized(self) -> bool:
        return self._refcount > 0

    # --- internals -------------------------------------------------------------------------------

    def _enter(self, function: str) -> None:
        self.calls[function] += 1
        if self.fail_with is not None:
            raise NVMLError(self.fail_with)
        if self._refcount == 0:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)

    def _device(self, function: str, handle: Any, feature: str | None = None) -> FakeGpu:
        self._enter(function)
        if not isinstance(handle, _Handle) or not 0 <= handle.index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[handle.index]
        self._count_down(gpu)
        if gpu.lost:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)
        if feature is not None and feature in gpu.unsupported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        if self.dynamic:
            self._tick()
        return gpu

    @staticmethod
    def _count_down(gpu: FakeGpu) -> None:
        if gpu.lose_after is not None:
            if gpu.lose_after <= 0:
                gpu.lost = True
                gpu.lose_after = None
            else:
                gpu.lose_after -= 1

    def _tick(self) -> None:
        """Move the figures of every GPU along a slow wave; integrate power into energy."""
        now = self._clock()
        elapsed = 0.0 if self._last_tick is None else max(0.0, now - self._last_tick)
        self._last_tick = now
        for index, gpu in enumerate(self.gpus):
            busy = 0.5 + 0.45 * math.sin(now / 20 + index * 1.7)
            if gpu.compute_processes:
                busy = min(1.0, busy + 0.2)
            gpu.utilization_gpu = round(100 * busy)
            gpu.utilization_memory = round(60 * busy)
            gpu.power_usage_mw = round(gpu.power_limit_mw * (0.1 + 0.8 * busy))
            gpu.energy_mj += round(gpu.power_usage_mw * elapsed)  # mW x s = mJ
            gpu.temperature = round(34 + 46 * busy)
            gpu.sm_clock_mhz = round(210 + 2310 * busy)
            gpu.mem_clock_mhz = 405 if busy < 0.05 else 10_501
            gpu.fan_percent = round(30 + 50 * busy)

    # --- the pynvml API ----------------------------------------------------------------------------

    def nvmlInitWithFlags(self, flags: int) -> None:
        self.calls["nvmlInit"] += 1
        error = self.init_error if self.init_error is not None else self.fail_with
        if error is not None:
            raise NVMLError(error)
        self._refcount += 1

    def nvmlInit(self) -> None:
        self.nvmlInitWithFlags(0)

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self._refcount -= 1

    def nvmlErrorString(self, result: int) -> str:
        return str(NVMLError(result))

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._device("nvmlDeviceGetHandleByIndex", _Handle(index))
        return _Handle(index)

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self._device("nvmlDeviceGetUUID", handle).uuid

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return self._device("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> c_nvmlUtilization_t:
        gpu = self._device("nvmlDeviceGetUtilizationRates", handle, "utilization")
        return c_nvmlUtilization_t(gpu.utilization_gpu, gpu.utilization_memory)

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> c_nvmlMemory_t:
        gpu = self._device("nvmlDeviceGetMemoryInfo", handle, "memory")
        used = gpu.memory_used
        return c_nvmlMemory_t(gpu.memory_total, gpu.memory_total - used, used)

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        gpu = self._device("nvmlDeviceGetTemperature", handle, "temperature")
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return gpu.temperature

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        """Milliwatts."""
        return self._device("nvmlDeviceGetPowerUsage", handle, "power").power_usage_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        """Milliwatts."""
        return self._device("nvmlDeviceGetEnforcedPowerLimit", handle, "power_limit").power_limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        """Millijoules since the driver was loaded."""
        return self._device("nvmlDeviceGetTotalEnergyConsumption", handle, "energy").energy_mj

    def nvmlDeviceGetClockInfo(self, handle: Any, type: int) -> int:
        """MHz."""
        if type == NVML_CLOCK_SM:
            return self._device("nvmlDeviceGetClockInfo", handle, "clock_sm").sm_clock_mhz
        if type == NVML_CLOCK_MEM:
            return self._device("nvmlDeviceGetClockInfo", handle, "clock_mem").mem_clock_mhz
        if type == NVML_CLOCK_GRAPHICS:
            return self._device("nvmlDeviceGetClockInfo", handle, "clock_sm").sm_clock_mhz
        self._device("nvmlDeviceGetClockInfo", handle)
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)

    def nvmlDeviceGetFanSpeed(self, handle: Any) -> int:
        """Percent of the fan's maximum."""
        return self._device("nvmlDeviceGetFanSpeed", handle, "fan").fan_percent

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[nvmlFriendlyObject]:
        gpu = self._device("nvmlDeviceGetComputeRunningProcesses", handle, "processes")
        return [_process(pid, used) for pid, used in gpu.compute_processes]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: Any) -> list[nvmlFriendlyObject]:
        gpu = self._device("nvmlDeviceGetGraphicsRunningProcesses", handle, "processes")
        return [_process(pid, used) for pid, used in gpu.graphics_processes]


def _process(pid: int, used: int | None) -> nvmlFriendlyObject:
    # 0xFFFFFFFF (NVML_VALUE_NOT_AVAILABLE) for the instance ids, as on a GPU without MIG.
    return nvmlFriendlyObject(
        {"pid": pid, "usedGpuMemory": used, "gpuInstanceId": 0xFFFFFFFF, "computeInstanceId": 0xFFFFFFFF}
    )
