"""NVIDIA GPUs through NVML (the `pynvml` module of NVIDIA's nvidia-ml-py package).

NVML is initialised once and kept; it is never shut down between samples. Without a driver (or
without a GPU) the sampler reports itself failed, writes one log line and tries to initialise again
at most every `retry_interval` seconds, so a driver installed later is picked up without a restart.
A field a card does not support is left out; a GPU that fell off the bus is left out of that round.

The NVML module is injectable (`nvml=`): tests and the `simulated` mode pass a fake with the same API.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from lmwatch.registry import Snapshot
from lmwatch.samplers.base import OnceLog, SamplerUnavailable
from lmwatch.samplers.gpu import GpuProcess, GpuSample, GpuSampler, GpuStats, attribute
from lmwatch.samplers.process import backend_pids

log = logging.getLogger("lmwatch.samplers.nvidia")

# NVML return codes (nvml.h; the same numbers as pynvml's NVML_ERROR_* constants).
UNINITIALIZED = 1
NO_PERMISSION = 4
DRIVER_NOT_LOADED = 9
LIBRARY_NOT_FOUND = 12
GPU_IS_LOST = 15
RESET_REQUIRED = 16
LIB_RM_VERSION_MISMATCH = 18
GPU_NOT_FOUND = 28

_FATAL = frozenset({UNINITIALIZED, DRIVER_NOT_LOADED, LIBRARY_NOT_FOUND, LIB_RM_VERSION_MISMATCH})
"""Errors that mean NVML itself is gone: every GPU is unavailable until a re-init succeeds."""
_LOST = frozenset({GPU_IS_LOST, RESET_REQUIRED, GPU_NOT_FOUND})
"""Errors that mean one GPU is gone: that GPU is left out of the round."""

_REASONS = {
    LIBRARY_NOT_FOUND: "no NVIDIA driver on this host (libnvidia-ml not found)",
    DRIVER_NOT_LOADED: "the NVIDIA driver is not loaded",
    LIB_RM_VERSION_MISMATCH: "the NVIDIA driver was upgraded without a reboot (NVML/RM version mismatch)",
    NO_PERMISSION: "no permission to open the NVIDIA devices",
}

MHZ = 1_000_000


def _code(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class _Identity:
    handle: Any
    uuid: str
    name: str


class NvidiaSampler(GpuSampler):
    """Every NVIDIA GPU through one NVML session, kept open across samples (re-initialised when lost)."""

    name = "gpu"
    """Not `nvidia`: the collector label dashboards and alerts know; other vendors take their own."""
    vendor = "nvidia"

    def __init__(
        self,
        interval: float = 5.0,
        nvml: Any = None,
        retry_interval: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.retry_interval = retry_interval
        self._nvml = nvml
        self._clock = clock
        self._lock = threading.Lock()
        self._ready = False
        self._next_attempt: float | None = None
        self._error = "NVML not initialised yet"
        self._driver: str | None = None
        self._identities: dict[int, _Identity] = {}
        self._once = OnceLog(log)

    # --- lifecycle -------------------------------------------------------------------------------

    def _module(self) -> Any:
        if self._nvml is None:
            self._nvml = importlib.import_module("pynvml")
        return self._nvml

    def _ensure_ready(self) -> Any:
        """The initialised NVML module; raises `SamplerUnavailable` until an init, retried at most
        every `retry_interval` s, succeeds."""
        if self._ready:
            return self._nvml
        now = self._clock()
        if self._next_attempt is not None and now < self._next_attempt:
            raise SamplerUnavailable(self._error)
        self._next_attempt = now + self.retry_interval
        try:
            nvml = self._module()
        except ImportError as exc:
            self._unavailable("import", logging.WARNING, f"nvidia-ml-py is not installed ({exc})")
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            code = _code(exc)
            level = logging.INFO if code == LIBRARY_NOT_FOUND else logging.WARNING
            self._unavailable(f"init:{code}", level, _REASONS.get(code or 0, f"NVML init failed: {exc}"))
        self._ready = True
        self._identities.clear()
        version = self._field(nvml, "nvmlSystemGetDriverVersion")
        self._driver = _text(version) if version is not None else None
        count = self._field(nvml, "nvmlDeviceGetCount")
        self._once.clear("nvml")
        log.info("NVML ready: driver %s, %s GPU(s)", self._driver or "?", count if count is not None else "?")
        return nvml

    def _unavailable(self, state: str, level: int, reason: str) -> NoReturn:
        self._error = f"GPU metrics unavailable: {reason}"
        self._once.problem("nvml", state, level, "%s; trying again every %g s", self._error, self.retry_interval)
        raise SamplerUnavailable(self._error)

    def _lose_nvml(self, nvml: Any, exc: BaseException) -> NoReturn:
        """NVML stopped answering as a whole (driver unloaded or upgraded): start over later."""
        self._ready = False
        self._identities.clear()
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
        self._next_attempt = self._clock() + self.retry_interval
        code = _code(exc)
        self._unavailable(f"lost:{code}", logging.WARNING, _REASONS.get(code or 0, f"NVML failed: {exc}"))

    def close(self) -> None:
        with self._lock:
            if self._ready and self._nvml is not None:
                self._ready = False
                with contextlib.suppress(Exception):
                    self._nvml.nvmlShutdown()

    # --- sampling --------------------------------------------------------------------------------

    def _prepare(self, snapshot: Snapshot) -> None:
        """Hook run before each sample (the simulated GPUs place the backends' processes here)."""

    def sample(self, snapshot: Snapshot) -> GpuSample:
        with self._lock:
            nvml = self._ensure_ready()
            self._prepare(snapshot)
            try:
                count = int(nvml.nvmlDeviceGetCount())
            except nvml.NVMLError as exc:
                self._lose_nvml(nvml, exc)
            gpus: list[GpuStats] = []
            for index in range(count):
                try:
                    gpus.append(self._read(nvml, index))
                except nvml.NVMLError as exc:
                    code = _code(exc)
                    if code in _FATAL:
                        self._lose_nvml(nvml, exc)
                    self._identities.pop(index, None)
                    self._once.problem(
                        f"gpu{index}",
                        f"error:{code}",
                        logging.WARNING,
                        "GPU %d does not answer (%s); its series are left out until it does",
                        index,
                        exc,
                    )
                    continue
                self._once.clear(f"gpu{index}", "GPU %d answers again", index)
            return GpuSample(
                vendor=self.vendor,
                driver_version=self._driver,
                gpus=tuple(gpus),
                backend_memory=attribute(gpus, backend_pids(snapshot)),
            )

    def _identity(self, nvml: Any, index: int) -> _Identity:
        """The handle, UUID and name of GPU `index`, asked once per NVML session (they do not change)."""
        identity = self._identities.get(index)
        if identity is None:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            identity = _Identity(handle, _text(nvml.nvmlDeviceGetUUID(handle)), _text(nvml.nvmlDeviceGetName(handle)))
            self._identities[index] = identity
        return identity

    def _field(self, nvml: Any, function: str, *args: Any) -> Any:
        """Call one NVML getter; None if this card does not support it (or refuses it)."""
        call = getattr(nvml, function, None)
        if call is None:  # an older binding without this function
            return None
        try:
            return call(*args)
        except nvml.NVMLError as exc:
            if _code(exc) in _FATAL | _LOST:  # not this field: the GPU or NVML itself is gone
                raise
            return None

    def _read(self, nvml: Any, index: int) -> GpuStats:
        ident = self._identity(nvml, index)
        h = ident.handle
        util = self._field(nvml, "nvmlDeviceGetUtilizationRates", h)
        memory = self._field(nvml, "nvmlDeviceGetMemoryInfo", h)
        temperature = self._field(nvml, "nvmlDeviceGetTemperature", h, nvml.NVML_TEMPERATURE_GPU)
        power = self._field(nvml, "nvmlDeviceGetPowerUsage", h)  # milliwatts
        limit = self._field(nvml, "nvmlDeviceGetEnforcedPowerLimit", h)  # milliwatts
        energy = self._field(nvml, "nvmlDeviceGetTotalEnergyConsumption", h)  # millijoules
        sm_clock = self._field(nvml, "nvmlDeviceGetClockInfo", h, nvml.NVML_CLOCK_SM)  # MHz
        mem_clock = self._field(nvml, "nvmlDeviceGetClockInfo", h, nvml.NVML_CLOCK_MEM)  # MHz
        fan = self._field(nvml, "nvmlDeviceGetFanSpeed", h)  # percent
        return GpuStats(
            index=index,
            uuid=ident.uuid,
            name=ident.name,
            utilization_ratio=util.gpu / 100 if util is not None else None,
            memory_utilization_ratio=util.memory / 100 if util is not None else None,
            memory_total_bytes=int(memory.total) if memory is not None else None,
            memory_used_bytes=int(memory.used) if memory is not None else None,
            memory_free_bytes=int(memory.free) if memory is not None else None,
            temperature_celsius=float(temperature) if temperature is not None else None,
            power_draw_watts=power / 1000 if power is not None else None,
            power_limit_watts=limit / 1000 if limit is not None else None,
            energy_joules=energy / 1000 if energy is not None else None,
            sm_clock_hertz=float(sm_clock * MHZ) if sm_clock is not None else None,
            memory_clock_hertz=float(mem_clock * MHZ) if mem_clock is not None else None,
            fan_speed_ratio=fan / 100 if fan is not None else None,
            processes=self._processes(nvml, h),
        )

    def _processes(self, nvml: Any, handle: Any) -> tuple[GpuProcess, ...]:
        """Compute (CUDA) and graphics (Vulkan, OpenGL) users of the GPU, one entry per PID."""
        mismatch = getattr(nvml, "NVMLLibraryMismatchError", None)
        found: dict[int, int | None] = {}
        for function in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            try:
                entries = self._field(nvml, function, handle) or []
            except Exception as exc:
                if mismatch is None or not isinstance(exc, mismatch):
                    raise
                entries = []
            for entry in entries:
                pid = int(entry.pid)
                used = entry.usedGpuMemory
                used = int(used) if used is not None else None
                previous = found.get(pid)
                found[pid] = used if previous is None else max(previous, used or 0)
        return tuple(GpuProcess(pid, used) for pid, used in sorted(found.items()))
