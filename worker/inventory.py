"""What this host offers: its GPUs through NVML, or its CPUs when it has none."""

import os
from dataclasses import asdict, dataclass, field

import pynvml


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    memory_bytes: int
    # The N of its /dev/nvidiaN, the one device node the sandbox shows of it (-1: unknown).
    minor_number: int = -1


@dataclass(frozen=True)
class Inventory:
    cpu_count: int
    memory_bytes: int
    gpus: list[Gpu] = field(default_factory=list)
    driver_version: str = ""
    cuda_version: str = ""
    # Why there are no GPUs, when there are none (no driver, no device, ...).
    gpu_unavailable_reason: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _host_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _minor_number(handle) -> int:
    try:
        return int(pynvml.nvmlDeviceGetMinorNumber(handle))
    except pynvml.NVMLError:
        return -1


def discover() -> Inventory:
    cpu_count = len(os.sched_getaffinity(0))
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        return Inventory(
            cpu_count=cpu_count,
            memory_bytes=_host_memory_bytes(),
            gpu_unavailable_reason=f"NVML unavailable: {error}",
        )
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            gpus.append(
                Gpu(
                    index=index,
                    uuid=_text(pynvml.nvmlDeviceGetUUID(handle)),
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    memory_bytes=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                    minor_number=_minor_number(handle),
                )
            )
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        return Inventory(
            cpu_count=cpu_count,
            memory_bytes=_host_memory_bytes(),
            gpus=gpus,
            driver_version=_text(pynvml.nvmlSystemGetDriverVersion()),
            cuda_version=f"{cuda // 1000}.{cuda % 1000 // 10}",
            gpu_unavailable_reason="" if gpus else "NVML reports no GPU on this host",
        )
    finally:
        pynvml.nvmlShutdown()
