"""Host, process and GPU telemetry families; the samplers (`lmwatch/samplers/`) fill them from
their samples, `SamplerCollector` serves them."""

from __future__ import annotations

from lmwatch.metrics.family import Family

GPU_LABELS = ("gpu", "uuid", "name")

HOST_CPU = Family("lmwatch_host_cpu_seconds", "counter", "Seconds all CPUs of the host spent in each mode.", ("mode",))
HOST_GAUGES: tuple[tuple[Family, str], ...] = (
    (Family("lmwatch_host_cpus", "gauge", "Logical CPUs of the host."), "cpus"),
    (Family("lmwatch_host_load1", "gauge", "Load average over 1 minute."), "load1"),
    (Family("lmwatch_host_load5", "gauge", "Load average over 5 minutes."), "load5"),
    (Family("lmwatch_host_load15", "gauge", "Load average over 15 minutes."), "load15"),
    (Family("lmwatch_host_memory_total_bytes", "gauge", "Physical memory of the host."), "memory_total_bytes"),
    (
        Family(
            "lmwatch_host_memory_available_bytes",
            "gauge",
            "Memory that can be given to processes without swapping (MemAvailable).",
        ),
        "memory_available_bytes",
    ),
    (
        Family("lmwatch_host_memory_used_bytes", "gauge", "Memory in use, not counting buffers and page cache."),
        "memory_used_bytes",
    ),
    (Family("lmwatch_host_swap_total_bytes", "gauge", "Swap space of the host."), "swap_total_bytes"),
    (Family("lmwatch_host_swap_used_bytes", "gauge", "Swap space in use."), "swap_used_bytes"),
    (
        Family("lmwatch_self_resident_memory_bytes", "gauge", "Resident memory of the lmwatch process."),
        "self_resident_memory_bytes",
    ),
)
"""The unlabelled host gauges, in exposition order, with the `HostSample` field each reads."""
SELF_CPU = Family("lmwatch_self_cpu_seconds", "counter", "CPU seconds used by the lmwatch process, by mode.", ("mode",))
SELF_OPEN_FDS = Family("lmwatch_self_open_fds", "gauge", "Open file descriptors of the lmwatch process.")
SELF_THREADS = Family("lmwatch_self_threads", "gauge", "Threads of the lmwatch process.")
HOST = (HOST_CPU, *(family for family, _ in HOST_GAUGES), SELF_CPU, SELF_OPEN_FDS, SELF_THREADS)

PROCESS_VISIBLE = Family(
    "lmwatch_backend_process_visible",
    "gauge",
    "1 if the process serving a local backend was found and measured; 0 if nothing listens on "
    "its port or the process cannot be seen (another user's).",
    ("backend",),
)
PROCESS_RSS = Family(
    "lmwatch_backend_process_resident_memory_bytes",
    "gauge",
    "Resident memory of the process serving the backend and its descendants.",
    ("backend",),
)
PROCESS_CPU = Family(
    "lmwatch_backend_process_cpu_seconds",
    "counter",
    "CPU seconds used by the process serving the backend and its descendants, by mode.",
    ("backend", "mode"),
)
PROCESS_THREADS = Family(
    "lmwatch_backend_process_threads",
    "gauge",
    "Threads of the process serving the backend and its descendants.",
    ("backend",),
)
PROCESS_COUNT = Family(
    "lmwatch_backend_processes",
    "gauge",
    "Processes serving the backend: the one listening on its port and its descendants.",
    ("backend",),
)
PROCESS_START = Family(
    "lmwatch_backend_process_start_time_seconds",
    "gauge",
    "Start time of the process listening on the backend's port, in seconds since the epoch.",
    ("backend",),
)
PROCESS = (PROCESS_VISIBLE, PROCESS_RSS, PROCESS_CPU, PROCESS_THREADS, PROCESS_COUNT, PROCESS_START)

GPU_INFO = Family(
    "lmwatch_gpu_info",
    "gauge",
    "1 for each GPU; its identity and driver in labels.",
    (*GPU_LABELS, "vendor", "driver_version"),
)
GPU_GAUGES: tuple[tuple[Family, str], ...] = (
    (
        Family(
            "lmwatch_gpu_utilization_ratio",
            "gauge",
            "Fraction of the last sample period (1/6 s to 1 s) in which a kernel ran on the GPU.",
            GPU_LABELS,
        ),
        "utilization_ratio",
    ),
    (
        Family(
            "lmwatch_gpu_memory_utilization_ratio",
            "gauge",
            "Fraction of the last sample period in which GPU memory was read or written.",
            GPU_LABELS,
        ),
        "memory_utilization_ratio",
    ),
    (Family("lmwatch_gpu_memory_total_bytes", "gauge", "Total memory of the GPU.", GPU_LABELS), "memory_total_bytes"),
    (Family("lmwatch_gpu_memory_used_bytes", "gauge", "GPU memory in use.", GPU_LABELS), "memory_used_bytes"),
    (Family("lmwatch_gpu_memory_free_bytes", "gauge", "GPU memory free.", GPU_LABELS), "memory_free_bytes"),
    (Family("lmwatch_gpu_temperature_celsius", "gauge", "GPU core temperature.", GPU_LABELS), "temperature_celsius"),
    (Family("lmwatch_gpu_power_draw_watts", "gauge", "Power drawn by the GPU board.", GPU_LABELS), "power_draw_watts"),
    (
        Family("lmwatch_gpu_power_limit_watts", "gauge", "Power limit the driver enforces on the GPU.", GPU_LABELS),
        "power_limit_watts",
    ),
    (
        Family(
            "lmwatch_gpu_sm_clock_hertz", "gauge", "Current clock of the GPU's streaming multiprocessors.", GPU_LABELS
        ),
        "sm_clock_hertz",
    ),
    (
        Family("lmwatch_gpu_memory_clock_hertz", "gauge", "Current clock of the GPU's memory.", GPU_LABELS),
        "memory_clock_hertz",
    ),
    (
        Family(
            "lmwatch_gpu_fan_speed_ratio",
            "gauge",
            "Fan speed as a fraction of its maximum (can exceed 1 on some boards).",
            GPU_LABELS,
        ),
        "fan_speed_ratio",
    ),
)
"""Gauges of every GPU, with the `GpuStats` field each reads."""
GPU_ENERGY = Family(
    "lmwatch_gpu_energy_joules",
    "counter",
    "Energy the GPU consumed since the driver was loaded (absent on cards that do not report it).",
    GPU_LABELS,
)
BACKEND_GPU_MEMORY = Family(
    "lmwatch_backend_gpu_memory_bytes",
    "gauge",
    "GPU memory held by the processes serving a backend, per GPU.",
    ("backend", "gpu"),
)
GPU = (GPU_INFO, *(family for family, _ in GPU_GAUGES), GPU_ENERGY, BACKEND_GPU_MEMORY)
