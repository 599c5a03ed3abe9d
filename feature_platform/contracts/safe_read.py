"""Bounded reads of input files: every JSON or YAML file the platform reads as input comes through here.

A path is opened only if it is a regular file (``O_NONBLOCK`` so a FIFO cannot block the open, then
``fstat`` on the open descriptor so the check and the read see the same file), read with a size cap,
and parsed with a nesting-depth limit. JSON refuses duplicate keys and NaN/Infinity; YAML refuses
aliases (no alias bombs) and duplicate keys. Every failure is an ``InputError`` whose message is one
line naming the input.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Hashable
from pathlib import Path
from typing import Any, BinaryIO

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

MAX_INPUT_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 100
_READ_BLOCK = 1024 * 1024


class InputError(ValueError):
    """An input file or text that is not a bounded, well-formed JSON/YAML document; one line, names the input."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def open_regular_file(path: Path | str, *, what: str | None = None, nofollow: bool = False) -> BinaryIO:
    """``path`` opened for binary reading, only if it is a regular file (checked on the open descriptor, so a
    FIFO cannot block the open and a swap after the check changes nothing). Symlinks are followed unless
    ``nofollow``; whatever is opened must be a regular file: never a device, FIFO, socket or directory."""
    name = what or str(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (os.O_NOFOLLOW if nofollow else 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if nofollow and exc.errno == errno.ELOOP:
            raise InputError(f"{name}: expected a regular file, got a symbolic link") from None
        raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputError(f"{name}: expected a regular file, got {_kind(mode)}")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb", buffering=0)


def read_input_bytes(path: Path | str, *, what: str | None = None, max_bytes: int = MAX_INPUT_BYTES,
                     nofollow: bool = False) -> bytes:
    """The bytes of ``path`` if it is a regular file (see ``open_regular_file``) of at most ``max_bytes``."""
    name = what or str(path)
    with open_regular_file(path, what=name, nofollow=nofollow) as f:
        try:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise InputError(f"{name}: expected at most {max_bytes} bytes, got {size}")
            chunks: list[bytes] = []
            total = 0
            while chunk := f.read(min(_READ_BLOCK, max_bytes + 1 - total)):
                chunks.append(chunk)
                total += len(chunk)
                if total > max_bytes:  # the file grew while being read
                    raise InputError(f"{name}: expected at most {max_bytes} bytes, got more")
            return b"".join(chunks)
        except OSError as exc:
            raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from None


def read_input_text(path: Path | str, *, what: str | None = None, max_bytes: int = MAX_INPUT_BYTES) -> str:
    name = what or str(path)
    return _decode(read_input_bytes(path, what=name, max_bytes=max_bytes), name)


def _kind(mode: int) -> str:
    for test, label in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return label
    return "not a regular file"


def _decode(data: bytes | str, source: str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: expected UTF-8 text, got an invalid byte at offset {exc.start}") from None


# --- JSON -----------------------------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} is not allowed")


def _check_depth(value: Any, source: str, max_depth: int) -> None:
    """Iterative, so a deep value cannot exhaust the stack here either."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > max_depth:
                raise InputError(f"{source}: expected nesting at most {max_depth} deep, got deeper")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def loads_json(data: bytes | str, source: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text strictly: UTF-8, no duplicate keys, no NaN/Infinity, nesting at most ``max_depth``."""
    text = _decode(data, source)
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except RecursionError:
        raise InputError(f"{source}: expected nesting at most {max_depth} deep, got deeper") from None
    except ValueError as exc:
        raise InputError(f"{source}: not valid JSON: {_one_line(str(exc))}") from None
    _check_depth(value, source, max_depth)
    return value


def read_json(path: Path | str, *, what: str | None = None, max_bytes: int = MAX_INPUT_BYTES,
              max_depth: int = MAX_DEPTH, nofollow: bool = False) -> Any:
    name = what or str(path)
    data = read_input_bytes(path, what=name, max_bytes=max_bytes, nofollow=nofollow)
    return loads_json(data, name, max_depth=max_depth)


# --- YAML -----------------------------------------------------------------------------------------------------


class BoundedSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (an alias bomb expands nothing), duplicate mapping keys and
    nesting deeper than ``max_depth``; the composer stops at the limit, before any recursion can run deep."""

    def __init__(self, stream: str, max_depth: int = MAX_DEPTH) -> None:
        super().__init__(stream)
        self.max_depth = max_depth
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise ConstructorError(None, None, "aliases (*name) are not allowed", event.start_mark)
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                raise ConstructorError(None, None, f"nesting deeper than {self.max_depth} is not allowed",
                                       self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def loads_yaml(data: bytes | str, source: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one YAML document with ``BoundedSafeLoader`` (no aliases, no duplicate keys, bounded depth)."""
    text = _decode(data, source)
    loader = BoundedSafeLoader(text, max_depth)
    try:
        return loader.get_single_data()
    except RecursionError:
        raise InputError(f"{source}: expected nesting at most {max_depth} deep, got deeper") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML: {_yaml_problem(exc)}") from None
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The problem and where, without the snippet PyYAML quotes (which may be a huge line)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        context = f"{exc.context}: " if exc.context else ""
        return _one_line(f"{context}{exc.problem}{where}")[:300]
    return _one_line(str(exc))[:300]


def read_yaml(path: Path | str, *, what: str | None = None, max_bytes: int = MAX_INPUT_BYTES,
              max_depth: int = MAX_DEPTH, nofollow: bool = False) -> Any:
    name = what or str(path)
    data = read_input_bytes(path, what=name, max_bytes=max_bytes, nofollow=nofollow)
    return loads_yaml(data, name, max_depth=max_depth)


def read_mapping(path: Path | str, *, what: str | None = None, max_bytes: int = MAX_INPUT_BYTES) -> dict[str, Any]:
    """A YAML (or JSON, which is YAML) file whose document is a mapping; an empty file is ``{}``."""
    name = what or str(path)
    value = read_yaml(path, what=name, max_bytes=max_bytes)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(f"{name}: expected a mapping at the top level, got {_type_name(value)}")
    return value


def _type_name(value: Any) -> str:
    return {list: "a list", str: "a string", int: "an integer", float: "a number", bool: "a boolean"}.get(
        type(value), type(value).__name__)
