"""Turning HailoRT's failures into one-line messages that say what is wrong and what to do.

HailoRT reports most setup problems as a bare status number ("libhailort failed with error: 74") or a
generic "HEF file is not compatible with device"; the HEF reader and a device scan tell us which case it
is. Facts: ../shared/reference/hailort.md §1c (statuses, device sharing) and §2 (header versions).
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from nvr.errors import DeviceError, ModelError
from nvr.hef import HefInfo

# Where the PCIe driver's version is (hailo_pci for Hailo-8/8L, hailo1x_pci for Hailo-10H/15).
DRIVER_VERSION_FILES: tuple[Path, ...] = (
    Path("/sys/module/hailo_pci/version"),
    Path("/sys/module/hailo1x_pci/version"),
)
# Hailo-8/8L (hw_arch 0-3) stay on HailoRT 4.x; the 5.x line is for the Hailo-10H/15 family.
HAILORT4_ARCHS = frozenset({0, 1, 2, 3})

HAILO_OUT_OF_PHYSICAL_DEVICES = 74
HAILO_INVALID_DRIVER_VERSION = 76
HAILO_RPC_FAILED = 77
HAILO_HEF_NOT_SUPPORTED = 92
HAILO_HEF_FILE_CORRUPTED = 91

# DeviceArchitectureTypes name -> (family users recognise, catalogue chip key, HEF hw_arch values it runs).
# The accepted sets are HailoRT's DeviceBase::is_hef_compatible.
DEVICE_ARCHS: dict[str, tuple[str, str, frozenset[int]]] = {
    "HAILO8_A0": ("Hailo-8", "hailo8", frozenset({1, 2, 3})),
    "HAILO8": ("Hailo-8", "hailo8", frozenset({1, 2, 3})),
    "HAILO8L": ("Hailo-8L", "hailo8l", frozenset({3})),
    "HAILO15H": ("Hailo-15H", "hailo15h", frozenset({4, 5, 103})),
    "HAILO10H": ("Hailo-10H", "hailo10h", frozenset({4, 5, 103})),
    "HAILO15L": ("Hailo-15L", "hailo15l", frozenset({6})),
    "HAILO15M": ("Hailo-15M", "hailo15m", frozenset({4})),
}


class HailoRuntimeMissingError(DeviceError):
    """`hailo_platform` cannot be imported: HailoRT is not installed (or the venv cannot see it)."""


def import_hailort() -> ModuleType:
    try:
        import hailo_platform
    except ImportError as exc:
        raise HailoRuntimeMissingError(
            f"HailoRT is not installed: cannot import hailo_platform ({exc}); install the OS package "
            "hailo-all and create the venv with --system-site-packages"
        ) from None
    module: ModuleType = hailo_platform
    return module


def status_of(exc: BaseException) -> int | None:
    """The HailoRT status number in a plain HailoRTException's text, if any."""
    match = re.search(r"error: (\d+)", str(exc))
    return int(match.group(1)) if match else None


def version_tuple(version: str) -> tuple[int, int]:
    parts = [int(p) for p in re.findall(r"\d+", version)[:2]]
    return [*parts, 0, 0][0], [*parts, 0, 0][1]


def model_family(info: HefInfo) -> str:
    """The model's catalogue name from its network group, e.g. scrfd_2_5g -> scrfd_2.5g."""
    return re.sub(r"(\d)_(\d)", r"\1.\2", info.default_group.name)


def check_hailort_reads(info: HefInfo, hailort_version: str) -> None:
    need = info.min_hailort
    if version_tuple(hailort_version) < need:
        raise ModelError(
            f"{info.path}: HEF header v{info.header_version} needs HailoRT {need[0]}.{need[1]} or newer, "
            f"the installed HailoRT is {hailort_version}: upgrade hailo-all, or use a HEF compiled with an "
            "older Dataflow Compiler"
        )


def wrong_chip(info: HefInfo, device_arch: str) -> ModelError:
    family, chip, _ = DEVICE_ARCHS.get(device_arch, (device_arch, device_arch.lower(), frozenset()))
    model = model_family(info)
    return ModelError(
        f"{info.path}: compiled for {info.arch_family}, this device is a {family}: use the {chip} build "
        f"of {model} (nvr models pull {model}-{chip})"
    )


def check_chip(info: HefInfo, device_arch: str | None) -> None:
    """Raise before configure() when the device is known not to run this HEF."""
    if device_arch is None or device_arch not in DEVICE_ARCHS:
        return
    if info.hw_arch not in DEVICE_ARCHS[device_arch][2]:
        raise wrong_chip(info, device_arch)


def device_arch_of(hailo: ModuleType, vdevice: Any) -> str | None:
    """The device's architecture name (DeviceArchitectureTypes), or None when it cannot be read."""
    devices: list[Any] = []
    try:
        devices = list(vdevice.get_physical_devices())
        return str(devices[0].control.identify().device_architecture.name)
    except Exception:  # identify is a firmware control; not every setup (service mode) allows it
        return None
    finally:
        for device in devices:
            with contextlib.suppress(Exception):
                device.release()


def vdevice_error(hailo: ModuleType, exc: BaseException) -> DeviceError:
    """Explain a failed VDevice(): no device, or a device another process holds (both status 74)."""
    status = status_of(exc)
    if status == HAILO_INVALID_DRIVER_VERSION:
        return driver_mismatch(str(getattr(hailo, "__version__", "unknown")))
    if status == HAILO_RPC_FAILED:
        return DeviceError(
            "HailoRT's multi-process service does not answer (HailoRT status 77): start it with "
            "`sudo systemctl enable --now hailort.service`, or turn multi_process_service off"
        )
    if status != HAILO_OUT_OF_PHYSICAL_DEVICES:
        return DeviceError(f"cannot open the Hailo device: {exc}")
    try:
        found = list(hailo.Device.scan())
    except Exception:
        found = []
    if not found:
        return DeviceError(
            "no Hailo device found (HailoRT status 74): check the card and its driver with "
            "`hailortcli scan` and `ls /dev/hailo*` (package hailo-all; reboot after installing it)"
        )
    return DeviceError(
        f"the Hailo device {found[0]} is busy: another process holds it (HailoRT status 74); find it with "
        "`lsof /dev/hailo0` and stop it, or share the device through HailoRT's multi-process service "
        "(hailort.service, hailo.multi_process_service: true)"
    )


def infer_model_error(info: HefInfo, hailort_version: str, exc: BaseException) -> ModelError:
    status = status_of(exc)
    if status == HAILO_HEF_NOT_SUPPORTED:
        need = info.min_hailort
        return ModelError(
            f"{info.path}: HailoRT {hailort_version} cannot read this HEF (header v{info.header_version} "
            f"needs {need[0]}.{need[1]} or newer): upgrade hailo-all"
        )
    if status == HAILO_HEF_FILE_CORRUPTED:
        return ModelError(f"{info.path}: HailoRT says the HEF file is corrupted: download it again")
    return ModelError(f"{info.path}: HailoRT cannot load this HEF: {exc}")


def installed_driver_version() -> str | None:
    """The loaded Hailo PCIe driver's version (the kernel module's), if this machine reports one."""
    for path in DRIVER_VERSION_FILES:
        with contextlib.suppress(OSError):
            return path.read_text().strip() or None
    return None


def driver_mismatch(library_version: str) -> DeviceError:
    """HAILO_INVALID_DRIVER_VERSION: the driver and the library must be the same x.y.z."""
    driver = installed_driver_version() or "unknown (see `modinfo hailo_pci`)"
    return DeviceError(
        f"the Hailo driver and library versions differ (HailoRT status 76): driver {driver}, library "
        f"{library_version}; install the same version of both (`sudo apt install --reinstall hailo-all`, "
        "or the hailort and hailort-pcie-driver packages of one release) and reboot, since the old driver "
        "stays loaded until then"
    )


@dataclass(frozen=True, slots=True)
class HailoRTCompatibility:
    """Which HailoRT a HEF needs, and whether the installed one (if any) provides it."""

    minimum: tuple[int, int]  # from the HEF header version
    major: int  # 4 for Hailo-8/8L builds, 5 for the Hailo-10H/15 family
    installed: str | None  # hailo_platform.__version__, None when HailoRT is not installed

    @property
    def needs(self) -> str:
        low = f"{self.minimum[0]}.{self.minimum[1]}" if self.minimum[0] == self.major else f"{self.major}.0"
        return f">= {low}, < {self.major + 1}.0"

    @property
    def ok(self) -> bool | None:
        if self.installed is None:
            return None
        version = version_tuple(self.installed)
        return version >= self.minimum and version[0] == self.major

    def line(self) -> str:
        """One line for `nvr models inspect` and `nvr check-config`."""
        needs = f"needs HailoRT {self.needs}"
        if self.installed is None:
            return f"{needs}; HailoRT is not installed here (hailo_platform cannot be imported)"
        if self.ok:
            return f"{needs}; installed {self.installed}: OK"
        return f"{needs}; installed {self.installed}: will not load it"

    def to_json(self) -> dict[str, Any]:
        return {"needs": self.needs, "installed": self.installed, "ok": self.ok}


def hailort_compatibility(info: HefInfo) -> HailoRTCompatibility:
    major = 4 if info.hw_arch in HAILORT4_ARCHS else 5
    return HailoRTCompatibility(info.min_hailort, major, installed_hailort_version())


def installed_hailort_version() -> str | None:
    """hailo_platform's version, or None when it is not installed (or fails to import)."""
    if importlib.util.find_spec("hailo_platform") is None:
        return None
    try:
        return str(import_hailort().__version__)
    except Exception:
        return None
