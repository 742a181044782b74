"""Read a YAML configuration into plain Python data, remembering the line every value came from.

PyYAML's composer gives nodes with start marks; we build the data ourselves from those nodes so that each
value's path (``("cameras", 0, "url")``) maps to its line, and a validation error can name ``file:line``.
String values go through `${...}` substitution here, before validation, so secrets never sit in the file:

- ``${NAME}`` / ``${NAME:-default}``: an environment variable (an unset one without a default is an error);
- ``${file:/path/to/secret}``: the contents of a file, trailing newline stripped;
- ``${credential:NAME}``: a systemd credential, ``$CREDENTIALS_DIRECTORY/NAME`` (``LoadCredential=``);
- ``$${`` stands for a literal ``${``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nvr.errors import ConfigError

Path_ = tuple[str | int, ...]

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ConfigFileError(ConfigError):
    """An invalid configuration file: `problems` lists every one as ``file:line: field.path: message``."""

    def __init__(self, problems: list[str]) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem(s); run `nvr check-config` to list them)"
        super().__init__(first + (more if len(problems) > 1 else ""))
        self.problems = problems


@dataclass
class SourceDocument:
    """A parsed configuration: plain data, and the line (1-based) of each value by its path."""

    file: Path
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line_of(self, path: Path_) -> int:
        """The line of `path`, or of its nearest ancestor that has one (a missing key: its mapping)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(tuple(path[:end]))
            if line is not None:
                return line
        return 1


def format_path(path: Path_) -> str:
    """``("cameras", 0, "url")`` -> ``cameras[0].url``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def read_config_file(path: Path, environ: Mapping[str, str] | None = None) -> SourceDocument:
    """Parse `path` into a `SourceDocument`; raises `ConfigFileError` naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigFileError([f"{path}: no such configuration file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError([f"{path}: cannot read the configuration file: {exc}"]) from None
    return parse_config_text(text, path, os.environ if environ is None else environ)


def parse_config_text(text: str, file: Path, environ: Mapping[str, str]) -> SourceDocument:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise ConfigFileError([yaml_error_message(exc, file)]) from None
    except yaml.YAMLError as exc:
        raise ConfigFileError([f"{file}: not valid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    document = SourceDocument(file, {})
    if root is None:
        return document
    builder = _Builder(loader, document, environ)
    document.data = builder.build(root, ())
    return document


# Constructs that PyYAML reports where it gave up (often the end of the file), not where the user erred:
# an unclosed quote or bracket. The error is reported where the construct began.
_UNCLOSED = {
    "while scanning a quoted scalar": "quoted string",
    "while parsing a flow sequence": "'[' list",
    "while parsing a flow mapping": "'{' mapping",
}


def yaml_error_message(exc: yaml.MarkedYAMLError, file: Path) -> str:
    """One line naming the file and the line where the user should look."""
    problem, began = exc.problem_mark, exc.context_mark
    what = _UNCLOSED.get(exc.context or "")
    reason = exc.problem or str(exc)
    if what is not None and began is not None and (problem is None or problem.line > began.line):
        where = f" ({reason} at line {problem.line + 1})" if problem is not None else ""
        return (
            f"{file}:{began.line + 1}: not valid YAML: the {what} that starts here "
            f"(column {began.column + 1}) is never closed{where}"
        )
    mark = problem or began
    line = mark.line + 1 if mark is not None else 1
    if exc.context and began is not None and began.line + 1 != line:
        reason += f" ({exc.context} that starts at line {began.line + 1})"
    return f"{file}:{line}: not valid YAML: {reason}"


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, document: SourceDocument, environ: Mapping[str, str]) -> None:
        self._loader = loader
        self._document = document
        self._environ = environ

    def _fail(self, node: yaml.Node, path: Path_, message: str) -> ConfigFileError:
        where = f"{self._document.file}:{node.start_mark.line + 1}"
        return ConfigFileError([f"{where}: {format_path(path)}: {message}"])

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self._document.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            self._loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self._loader.construct_object(key_node, deep=True)
                if not isinstance(key, str | int):
                    raise self._fail(key_node, path, f"keys must be names, got {key!r}")
                key = str(key)
                if key in result:
                    raise self._fail(key_node, (*path, key), "duplicate key")
                result[key] = self.build(value_node, (*path, key))
                # A key's own line is the better pointer than its value's (which may start lines below).
                self._document.lines[(*path, key)] = key_node.start_mark.line + 1
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        try:
            value = self._loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise self._fail(node, path, str(exc.problem or exc)) from None
        if isinstance(value, str):
            return self._substitute(value, node, path)
        return value

    def _substitute(self, value: str, node: yaml.Node, path: Path_) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            return self._resolve(match.group(1), node, path)

        return _REFERENCE.sub(replace, value)

    def _resolve(self, reference: str, node: yaml.Node, path: Path_) -> str:
        kind, _, argument = reference.partition(":")
        if kind == "file" and argument:
            return self._read_secret(Path(argument).expanduser(), node, path)
        if kind == "credential" and argument:
            directory = self._environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise self._fail(
                    node,
                    path,
                    f"${{credential:{argument}}} needs systemd's LoadCredential= "
                    "($CREDENTIALS_DIRECTORY is not set)",
                )
            return self._read_secret(Path(directory) / argument, node, path)
        name, has_default, default = reference.partition(":-")
        if not _ENV_NAME.fullmatch(name):
            raise self._fail(
                node,
                path,
                f"${{{reference}}} is not a valid reference: use ${{NAME}}, ${{NAME:-default}}, "
                "${file:PATH} or ${credential:NAME} (write $${ for a literal ${)",
            )
        found = self._environ.get(name)
        if found is not None and (found or not has_default):
            return found
        if has_default:
            return default
        raise self._fail(
            node,
            path,
            f"environment variable {name} is not set (write ${{{name}:-default}} to give a default)",
        )

    def _read_secret(self, file: Path, node: yaml.Node, path: Path_) -> str:
        try:
            return file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise self._fail(node, path, f"cannot read secret file {file}: {exc.strerror or exc}") from None
