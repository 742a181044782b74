"""The systemd unit and the install script: systemd accepts the unit, rates its sandbox well, and the unit
agrees with the code (exit codes, sd_notify, the command it starts)."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PROJECT_ROOT

from nvr.errors import ExitCode

UNIT = PROJECT_ROOT / "systemd" / "nvr.service"
INSTALL = PROJECT_ROOT / "scripts" / "install.sh"


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is missing: apt-get install -y systemd", pytrace=False)
    return found


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # ExecStart must name an existing executable for verify to pass: point it at this checkout's nvr.
    nvr = PROJECT_ROOT / ".venv" / "bin" / "nvr"
    unit = tmp_path / "nvr.service"
    unit.write_text(UNIT.read_text().replace("/opt/nvr/venv/bin/nvr", str(nvr)))
    result = subprocess.run(
        [systemd_analyze(), "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "nvr.service" not in result.stderr, result.stderr  # no warnings about our unit either


def test_unit_sandbox_is_rated_ok_or_better() -> None:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for nvr\.service: (\d+\.\d+) (\w+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    exposure, rating = float(match.group(1)), match.group(2)
    assert rating in ("OK", "SAFE"), f"exposure {exposure} rated {rating}"
    assert exposure <= 2.0


def test_unit_agrees_with_the_code() -> None:
    settings = unit_settings()
    assert settings["Type"] == ["notify"]
    assert settings["RestartPreventExitStatus"] == [str(int(ExitCode.CONFIG))]
    assert settings["Restart"] == ["on-failure"]
    assert settings["User"] == ["nvr"]
    assert settings["DevicePolicy"] == ["closed"] and settings["DeviceAllow"] == ["/dev/hailo0 rw"]
    assert int(settings["WatchdogSec"][0]) >= 30
    # Our shutdown budget (10 s) must fit in systemd's before it sends SIGKILL.
    assert int(settings["TimeoutStopSec"][0]) > 10
    assert settings["ExecStart"] == ["/opt/nvr/venv/bin/nvr run /etc/nvr/nvr.yml"]
    assert "StateDirectory" in settings and "ConfigurationDirectory" in settings


def test_unit_reaches_hailorts_multi_process_service_socket() -> None:
    """PrivateTmp= hides the host's /tmp, where hailort_service listens (/tmp/hailort_uds.sock): the unit
    binds that one socket in, optionally ("-": no error when the service is not installed or running), keeps
    its private /tmp, allows AF_UNIX, and starts after hailort.service without requiring it."""
    settings = unit_settings()
    assert settings["PrivateTmp"] == ["yes"]
    assert "-/tmp/hailort_uds.sock" in settings["BindPaths"]
    assert "AF_UNIX" in settings["RestrictAddressFamilies"][0].split()
    assert "hailort.service" in settings["After"][0].split()
    requires = " ".join(v for k in ("Requires", "Wants", "BindsTo") for v in settings.get(k, []))
    assert "hailort" not in requires  # a machine without the service (or without a Hailo) still starts nvr
    assert "/tmp/hailort_uds.sock" in (PROJECT_ROOT / "README.md").read_text()


def test_unit_parses_as_ini() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(UNIT.read_text())
    assert parser.sections() == ["Unit", "Service", "Install"]
    assert parser["Install"]["WantedBy"] == "multi-user.target"


def test_install_script_is_valid_bash_and_refuses_unknown_options() -> None:
    assert subprocess.run(["bash", "-n", str(INSTALL)], check=False).returncode == 0
    result = subprocess.run(
        ["bash", str(INSTALL), "--frobnicate"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2 and "unknown option --frobnicate" in result.stderr
    result = subprocess.run(["bash", str(INSTALL), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "--uninstall" in result.stdout


@pytest.mark.slow
def test_install_is_idempotent_and_uninstalls(tmp_path: Path) -> None:
    """A real install into a scratch root (venv, pip install of this checkout, config, unit), twice, then
    --uninstall (keeps config and state) and --uninstall --purge. Run as root, as on a Pi."""
    if os.geteuid() != 0:
        pytest.fail("the install script test runs as root (as install.sh does)", pytrace=False)
    env = {
        **os.environ,
        "PREFIX": str(tmp_path / "opt"), "CONFIG_DIR": str(tmp_path / "etc"),
        "STATE_DIR": str(tmp_path / "var"), "UNIT_DIR": str(tmp_path / "units"), "SERVICE_USER": "root",
    }  # fmt: skip

    def install(*args: str) -> str:
        result = subprocess.run(
            ["bash", str(INSTALL), *args], env=env, capture_output=True, text=True, check=False, timeout=600
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr

    first = install()
    # No model pulled yet: the check names the command that fills the service's store.
    assert "installed" in first and "configuration is not ready" in first
    assert f"NVR_MODELS={tmp_path}/var/models nvr models pull scrfd_2.5g`" in first
    assert (tmp_path / "var" / "models").is_dir()  # the service's model store ($STATE_DIRECTORY/models)
    unit = (tmp_path / "units" / "nvr.service").read_text()
    assert f"ExecStart={tmp_path}/opt/venv/bin/nvr run {tmp_path}/etc/nvr.yml" in unit
    config = tmp_path / "etc" / "nvr.yml"
    config.write_text(config.read_text() + "# edited by the user\n")
    second = install()
    assert "kept existing" in second and config.read_text().endswith("# edited by the user\n")
    assert (tmp_path / "opt" / "venv" / "bin" / "nvr").exists()
    install("--uninstall")
    assert not (tmp_path / "opt").exists() and not (tmp_path / "units" / "nvr.service").exists()
    assert config.exists() and (tmp_path / "var").exists()
    install("--uninstall", "--purge")
    assert not (tmp_path / "etc").exists() and not (tmp_path / "var").exists()
