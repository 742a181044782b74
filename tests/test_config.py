"""The configuration loader: each mistake gets one line naming file, line and field; secrets stay out."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT_ROOT, asset_path
from pydantic import BaseModel

from nvr.config import ConfigFileError, NvrConfig, load_config
from nvr.errors import ExitCode

EXAMPLE = PROJECT_ROOT / "config" / "nvr.example.yml"
QUICKSTART = PROJECT_ROOT / "config" / "quickstart.yml"


def write(tmp_path: Path, text: str, name: str = "nvr.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigFileError) as info:
        load_config(path, environ or {})
    assert info.value.exit_code == ExitCode.CONFIG
    return info.value.problems


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "cameras:\n  - name: door\n    url: rtsp://10.0.0.2/s2\n")
    config = load_config(path, {})
    camera = config.cameras[0]
    assert (camera.detect_fps, camera.enabled, camera.transport, camera.threshold) == (5.0, True, "tcp", None)
    assert config.detector.backend == "auto" and config.mqtt is None
    assert config.metrics.host == "127.0.0.1"


def test_unknown_key_names_file_line_and_path_with_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "cameras:\n  - name: door\n    url: rtsp://10.0.0.2/s2\n    detect_fsp: 4\n")
    [problem] = problems(path)
    assert problem == f"{path}:4: cameras[0].detect_fsp: unknown key (did you mean 'detect_fps'?)"


def test_unknown_key_in_a_nested_stage_section(tmp_path: Path) -> None:
    path = write(tmp_path, "events:\n  tracker:\n    end_afterr: 3\n")
    [problem] = problems(path)
    assert problem.startswith(f"{path}:3: events.tracker.end_afterr: unknown key (did you mean 'end_after'?)")


def test_wrong_type_is_reported_with_the_value(tmp_path: Path) -> None:
    path = write(tmp_path, "cameras:\n  - name: door\n    url: rtsp://h/s\n    detect_fps: fast\n")
    [problem] = problems(path)
    assert problem.startswith(f"{path}:4: cameras[0].detect_fps: ")
    assert "'fast'" in problem


def test_every_problem_is_listed_in_file_order(tmp_path: Path) -> None:
    text = "detector:\n  backend: cuda\nmetrics:\n  port: 99999\nlogging:\n  level: loud\n"
    found = problems(write(tmp_path, text))
    assert [p.split(": ")[1] for p in found] == ["detector.backend", "metrics.port", "logging.level"]
    assert [int(p.split(":")[1]) for p in found] == [2, 4, 6]


def test_duplicate_camera_names_point_at_the_second(tmp_path: Path) -> None:
    text = "cameras:\n  - name: door\n    url: rtsp://a/s\n  - name: Door\n    url: rtsp://b/s\n"
    [problem] = problems(write(tmp_path, text))
    assert problem.endswith(":4: cameras[1].name: duplicate camera name 'Door' (already used by cameras[0])")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://cam/stream", "unsupported URL"),
        ("rtsp:///stream", "has no host"),
        ("rtsp://cam:99999/stream", "invalid port"),
        ("file:///no/such/video.mp4", "no such video file: /no/such/video.mp4"),
        ("file://relative/video.mp4", "absolute path"),
    ],
)
def test_bad_urls(tmp_path: Path, url: str, expected: str) -> None:
    [problem] = problems(write(tmp_path, f"cameras:\n  - name: door\n    url: {url}\n"))
    assert ":3: cameras[0].url: " in problem and expected in problem


def test_passwords_never_appear_in_messages(tmp_path: Path) -> None:
    text = "cameras:\n  - name: door\n    url: rtsp://admin:hunter2@cam:99999/s\n"
    [problem] = problems(write(tmp_path, text))
    assert "hunter2" not in problem and "invalid port" in problem


def test_bad_camera_name(tmp_path: Path) -> None:
    [problem] = problems(write(tmp_path, "cameras:\n  - name: front door\n    url: rtsp://a/s\n"))
    assert ":2: cameras[0].name: camera names use letters" in problem


def test_camera_names_may_have_64_characters_as_the_readme_says(tmp_path: Path) -> None:
    longest = "c" * 64
    config = load_config(write(tmp_path, f"cameras:\n  - name: {longest}\n    url: rtsp://a/s\n"), {})
    assert [c.name for c in config.cameras] == [longest]
    [problem] = problems(write(tmp_path, f"cameras:\n  - name: {longest}x\n    url: rtsp://a/s\n"))
    assert ":2: cameras[0].name: camera names use letters, digits, '_' and '-' (up to 64," in problem
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "(at most 64)" in readme


def test_missing_required_key_points_at_its_mapping(tmp_path: Path) -> None:
    [problem] = problems(write(tmp_path, "cameras:\n  - name: door\n    enabled: true\n"))
    assert problem.endswith(":2: cameras[0].url: required key is missing")


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    [problem] = problems(write(tmp_path, "detector:\n  threshold: 0.5\n  threshold: 0.7\n"))
    assert problem.endswith(":3: detector.threshold: duplicate key")


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    [problem] = problems(write(tmp_path, "cameras:\n  - name: door\n   url: [\n"))
    assert re.match(rf"{re.escape(str(tmp_path))}/nvr.yml:\d+: not valid YAML", problem)


def test_an_unclosed_quote_is_reported_where_it_begins_not_at_the_end_of_the_file(tmp_path: Path) -> None:
    text = 'cameras:\n  - name: door\n    url: "rtsp://a/s\n    detect_fps: 4\n  - name: yard\n'
    [problem] = problems(write(tmp_path, text))
    assert problem == (
        f"{tmp_path}/nvr.yml:3: not valid YAML: the quoted string that starts here (column 10) is never "
        "closed (found unexpected end of stream at line 6)"
    )


def test_an_unclosed_bracket_is_reported_where_it_begins(tmp_path: Path) -> None:
    text = "cameras:\n  - name: door\n    url: rtsp://a/s\n    region: [[0, 0], [1, 0], [1, 1]\n"
    text += "    masks: []\n"
    [problem] = problems(write(tmp_path, text))
    assert problem.startswith(f"{tmp_path}/nvr.yml:4: not valid YAML: the '[' list that starts here")
    assert "at line 5" in problem


def test_a_misplaced_key_is_reported_at_its_own_line_with_the_block_it_breaks(tmp_path: Path) -> None:
    [problem] = problems(write(tmp_path, "cameras:\n  - name: door\n url: rtsp://a/s\n"))
    assert problem.startswith(f"{tmp_path}/nvr.yml:3: not valid YAML: expected <block end>")
    assert problem.endswith("(while parsing a block mapping that starts at line 1)")


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    [problem] = problems(tmp_path / "absent.yml")
    assert "no such configuration file" in problem
    assert load_config(write(tmp_path, ""), {}).cameras == []


def test_environment_substitution(tmp_path: Path) -> None:
    text = (
        "cameras:\n  - name: door\n    url: rtsp://admin:${CAM_PW}@${CAM_HOST:-10.0.0.9}/s?x=$${literal}\n"
    )
    config = load_config(write(tmp_path, text), {"CAM_PW": "p@ss"})
    assert config.cameras[0].url == "rtsp://admin:p@ss@10.0.0.9/s?x=${literal}"


def test_unset_variable_is_an_error_naming_it(tmp_path: Path) -> None:
    [problem] = problems(write(tmp_path, "mqtt:\n  host: ${BROKER}\n"))
    assert problem.endswith(":2: mqtt.host: environment variable BROKER is not set "
                            "(write ${BROKER:-default} to give a default)")


def test_secret_files_and_systemd_credentials(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "secret_mqtt").write_text("from-credential")
    text = (
        f"mqtt:\n  host: broker\n  username: ${{file:{tmp_path}/pw}}\n"
        "  password: ${credential:secret_mqtt}\n"
    )
    config = load_config(write(tmp_path, text), {"CREDENTIALS_DIRECTORY": str(creds)})
    assert config.mqtt is not None and config.mqtt.username == "from-file"
    assert config.mqtt.password is not None and config.mqtt.password.get_secret_value() == "from-credential"
    [problem] = problems(write(tmp_path, text, "b.yml"), {})
    assert ":4: mqtt.password: ${credential:secret_mqtt} needs systemd's LoadCredential=" in problem


def test_polygons_must_be_fractions_with_three_points(tmp_path: Path) -> None:
    base = "cameras:\n  - name: door\n    url: rtsp://a/s\n"
    [problem] = problems(write(tmp_path, base + "    region: [[0, 0], [1.5, 0], [1, 1]]\n"))
    assert ":4: cameras[0].region[1][0]: " in problem
    [problem] = problems(write(tmp_path, base + "    masks: [[[0, 0], [1, 0]]]\n", "b.yml"))
    assert ":4: cameras[0].masks[0]: " in problem


def test_check_config_cli_lists_every_problem_and_exits_with_the_config_code(tmp_path: Path) -> None:
    path = write(tmp_path, "detector:\n  backend: cuda\nmetrics:\n  prot: 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "nvr", "check-config", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == ExitCode.CONFIG
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"nvr: error: {path}:2: detector.backend: "
        "Input should be 'auto', 'onnx', 'tflite' or 'hailo' (got 'cuda')",
        f"nvr: error: {path}:4: metrics.prot: unknown key (did you mean 'port'?)",
    ]
    assert "Traceback" not in result.stderr


def test_run_with_an_invalid_file_exits_with_the_config_code(tmp_path: Path) -> None:
    path = write(tmp_path, "cameras: 3\n")
    result = subprocess.run(
        [sys.executable, "-m", "nvr", "run", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == ExitCode.CONFIG
    assert result.stderr.startswith(f"nvr: error: {path}:1: cameras: ")


def _field_names(model: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(name)
        annotation: Any = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                names |= _field_names(candidate)
            for inner in getattr(candidate, "__args__", ()):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    names |= _field_names(inner)
    return names


def test_the_example_is_valid_and_documents_every_option() -> None:
    config = load_config(EXAMPLE, {})
    assert [c.name for c in config.enabled_cameras] == ["front_door"]
    documented = set(re.findall(r"^\s*#?\s*-?\s*([a-z_]+):", EXAMPLE.read_text(), re.MULTILINE))
    missing = _field_names(NvrConfig) - documented
    assert not missing, f"options missing from {EXAMPLE.name}: {sorted(missing)}"


def test_the_quickstart_is_valid() -> None:
    # scripts/quickstart.sh turns a video file into a file:// URL, or passes an rtsp:// URL through.
    video = asset_path("video/hamilton_clip.mp4")
    config = load_config(QUICKSTART, {"NVR_CAMERA_URL": video.as_uri()})
    assert config.mqtt is None and config.detector.backend == "onnx"
    assert config.cameras[0].file_path == video
    camera = load_config(QUICKSTART, {"NVR_CAMERA_URL": "rtsp://192.168.1.20:554/stream"}).cameras[0]
    assert camera.url == "rtsp://192.168.1.20:554/stream" and camera.file_path is None
    [unset] = problems(QUICKSTART)  # run by hand without the script: the line says what to set
    assert "cameras[0].url: environment variable NVR_CAMERA_URL is not set" in unset
