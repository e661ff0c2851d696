"""A strict, bounded YAML loader for config files: plain data only, YAML 1.2 scalars, no surprises.

PyYAML's ``yaml.safe_load`` builds no objects, but a config fuzzer found that it still

* reads YAML 1.1 scalars: ``1:30`` is 90, ``yes``/``on``/``n`` are booleans, ``0777`` is octal,
  ``2001-12-14`` is a date and ``1e-3`` a string;
* keeps the last of two equal keys and silently drops the first;
* expands alias bombs ("billion laughs") and recurses once per nesting level (``[[[[...``
  ends in a ``RecursionError``);
* needs the file in UTF-8 and otherwise fails with a ``UnicodeDecodeError`` traceback.

:class:`SafeLoader` is PyYAML's pure-Python safe loader with YAML 1.2 core schema scalars and
limits on size, nesting depth, aliases and node count; :func:`safe_load` and :func:`read_yaml`
turn every problem into a :class:`~diffrl_core.errors.ConfigError` that names the source and,
where known, the line and column. :func:`shorten` keeps huge values out of error messages;
:func:`safe_dump` writes YAML that reads back the same with :func:`safe_load` and ``yaml.safe_load``.

Scalars (YAML 1.2 core schema; every other plain scalar is a string):

========  ===================================================================================
null      ``~``, ``null``, ``Null``, ``NULL`` and the empty value
bool      ``true``, ``True``, ``TRUE``, ``false``, ``False``, ``FALSE`` (not ``yes``/``on``/``y``)
int       ``[-+]?[0-9]+`` (decimal, leading zeros included: ``0777`` is 777), ``0o17``, ``0x1F``
float     ``1.5``, ``.5``, ``1.``, ``1e-3``, ``-2E+4``, ``[-+].inf`` (any case form), ``.nan``
========  ===================================================================================

Extension: a single ``_`` is allowed between digits of an int or float (``1_000_000``, ``0x7F_FF``;
``1__0``, ``_1`` and ``1_`` are strings), as PyYAML allowed it and configs write buffer sizes that way.
Explicit tags are refused except the standard ``!!str``, ``!!int``, ``!!float``, ``!!bool``, ``!!null``,
``!!seq`` and ``!!map`` (so ``!!binary``, ``!!timestamp``, ``!!set`` and ``!!python/...`` are refused);
merge keys (``<<``) are refused too: a config never needs them.
"""

from __future__ import annotations

import codecs
import re
import reprlib
from collections.abc import Sized
from os import PathLike
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from diffrl_core.errors import ConfigError

#: the largest config accepted, in bytes for a file and in characters for a text (1 MiB: a config is a few KiB)
MAX_BYTES = 1024 * 1024
#: the deepest nesting of collections and scalars (a config nests about 4 levels), aliases expanded
MAX_DEPTH = 64
#: the most alias uses (``*name``) in a document
MAX_ALIASES = 100
#: the most nodes in a document, counting each alias as the number of nodes it expands to
MAX_NODES = 100_000
_STANDARD = "tag:yaml.org,2002:"  # what '!!' stands for
#: the explicit tags a document may carry (all others, ``!!python/...`` included, are refused)
ALLOWED_TAGS = frozenset(_STANDARD + name for name in ("str", "int", "float", "bool", "null", "seq", "map"))

_NULL_TAG = _STANDARD + "null"
_BOOL_TAG = _STANDARD + "bool"
_INT_TAG = _STANDARD + "int"
_FLOAT_TAG = _STANDARD + "float"
_MERGE_KEY = "<<"
# the longest error message safe_load passes on (PyYAML's may quote a whole anchor or tag name)
_MAX_MESSAGE = 2000

# YAML 1.2 core schema, with single underscores allowed between digits (PyYAML's extension, kept)
_DIGITS = r"[0-9](?:_?[0-9])*"
_NULL = re.compile(r"(?:~|null|Null|NULL|)\Z")
_TRUE = ("true", "True", "TRUE")
_BOOL = re.compile(r"(?:true|True|TRUE|false|False|FALSE)\Z")
_INT = re.compile(rf"(?:[-+]?{_DIGITS}|0o[0-7](?:_?[0-7])*|0x[0-9a-fA-F](?:_?[0-9a-fA-F])*)\Z")
# a dot or an exponent is required, so that ints stay ints
_FINITE = re.compile(
    rf"[-+]?(?:\.{_DIGITS}|{_DIGITS}\.(?:{_DIGITS})?)(?:[eE][-+]?[0-9]+)?\Z"  # 1.5, .5, 1., 1.5e3
    rf"|[-+]?{_DIGITS}[eE][-+]?[0-9]+\Z"  # 1e-3
)
_INFINITE = re.compile(r"[-+]?\.(?:inf|Inf|INF)\Z")
_NAN = re.compile(r"\.(?:nan|NaN|NAN)\Z")
_FLOAT = re.compile(f"{_FINITE.pattern}|{_INFINITE.pattern}|{_NAN.pattern}")


class StrictYAMLError(yaml.YAMLError):
    """A document that PyYAML reads but :class:`SafeLoader` refuses (duplicate key, too deep, a tag, ...).

    The message is ``subject``, the place, then ``rest``: "duplicate key 'policy' at line 9, column 1
    (first at line 3)".

    :param subject: what is refused, e.g. ``"duplicate key 'policy'"``
    :param mark: where in the document (PyYAML's mark), if known
    :param rest: said after the place, with its leading space or colon, e.g. ``" (first at line 3)"``
    """

    def __init__(self, subject: str, mark: Any = None, rest: str = "") -> None:
        self.subject = subject
        self.mark = mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        super().__init__(f"{subject}{where}{rest}")


class SafeLoader(yaml.SafeLoader):
    """PyYAML's pure-Python safe loader with YAML 1.2 core schema scalars and limits (see the module).

    Refuses (with :class:`StrictYAMLError`, a ``yaml.YAMLError``): explicit tags other than the
    standard ones, duplicate keys, merge keys, nesting deeper than :data:`MAX_DEPTH`, more than
    :data:`MAX_ALIASES` aliases, more than :data:`MAX_NODES` nodes (aliases expanded) and recursive
    aliases. Use it through :func:`safe_load`, which also bounds the input size.
    """

    # replaced, not extended: PyYAML's YAML 1.1 resolvers (sexagesimal, yes/no, octal, dates,
    # merge '<<' and value '=') are not inherited; the constructors are reduced to plain data
    yaml_implicit_resolvers: dict[str | None, list[tuple[str, re.Pattern[str]]]] = {}
    yaml_constructors: dict[str | None, Any] = {}
    yaml_multi_constructors: dict[str | None, Any] = {}

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._reset_limits()

    def _reset_limits(self) -> None:
        self._depth = 0  # the level of the node being composed (the root is level 1)
        self._deepest = 0  # the deepest level reached in the subtree being composed
        self._nodes = 0
        self._aliases = 0
        # anchor -> (nodes, levels) of its node, to count an alias as what it expands to
        self._anchor_sizes: dict[str, tuple[int, int]] = {}
        self._open_anchors: set[str] = set()  # anchors whose node is being composed

    def compose_document(self) -> Node:
        self._reset_limits()
        return super().compose_document()

    def _reach(self, level: int, mark: Any) -> None:
        if level > MAX_DEPTH:
            raise StrictYAMLError(f"nesting deeper than {MAX_DEPTH} levels", mark)
        self._deepest = max(self._deepest, level)

    def _count(self, nodes: int, mark: Any) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            raise StrictYAMLError(f"more than {MAX_NODES} nodes (aliases count as what they expand to)", mark)

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        # PyYAML composes recursively, so the depth is checked here, before Python's recursion limit
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            anchor = event.anchor
            if anchor in self._open_anchors:
                raise StrictYAMLError(
                    f"alias {shorten(anchor, 80)}",
                    event.start_mark,
                    " is inside its own anchor (recursive structures are not supported)",
                )
            size = self._anchor_sizes.get(anchor)
            if size is not None:  # an undefined alias is left to PyYAML's own error
                self._aliases += 1
                if self._aliases > MAX_ALIASES:
                    raise StrictYAMLError(
                        f"alias number {MAX_ALIASES + 1}", event.start_mark, f": at most {MAX_ALIASES} aliases"
                    )
                nodes, levels = size
                self._count(nodes, event.start_mark)
                self._reach(self._depth + levels, event.start_mark)
            return super().compose_node(parent, index)

        tag = getattr(event, "tag", None)
        if tag not in (None, "!") and tag not in ALLOWED_TAGS:
            raise StrictYAMLError(
                f"tag {shorten(tag.replace(_STANDARD, '!!', 1), 80)}",
                event.start_mark,
                " is not allowed (only the standard !!str, !!int, !!float, !!bool, !!null, !!seq and !!map)",
            )
        self._depth += 1
        self._reach(self._depth, event.start_mark)
        self._count(1, event.start_mark)
        anchor = event.anchor
        if anchor is not None:
            self._open_anchors.add(anchor)
        nodes_before, deepest_before = self._nodes, self._deepest
        self._deepest = self._depth
        node = super().compose_node(parent, index)
        if anchor is not None:
            self._open_anchors.discard(anchor)
            self._anchor_sizes[anchor] = (self._nodes - nodes_before + 1, self._deepest - self._depth + 1)
        self._deepest = max(self._deepest, deepest_before)
        self._depth -= 1
        return node

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        # PyYAML keeps the last of two equal keys; a config with `policy:` twice loses the first
        if isinstance(node, MappingNode):
            first_nodes: dict[Any, Node] = {}
            for key_node, _ in node.value:
                if isinstance(key_node, ScalarNode) and key_node.style is None and key_node.value == _MERGE_KEY:
                    raise StrictYAMLError(
                        "merge key '<<'", key_node.start_mark, ": merge keys are not supported, write the keys out"
                    )
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = first_nodes.get(key)
                except TypeError:  # unhashable: PyYAML's own error follows
                    continue
                if first is not None:
                    raise StrictYAMLError(
                        f"duplicate key {shorten(key, 80)}",
                        key_node.start_mark,
                        f" (first at line {first.start_mark.line + 1})",
                    )
                first_nodes[key] = key_node
        result: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return result

    def _scalar(self, node: Node, pattern: re.Pattern[str], kind: str) -> str:
        value: str = self.construct_scalar(node)
        if not pattern.match(value):  # only an explicit tag gets here with such a value
            raise StrictYAMLError(shorten(value, 80), node.start_mark, f" is not {kind}")
        return value

    def construct_yaml_null(self, node: Node) -> None:
        self._scalar(node, _NULL, "a YAML 1.2 null (~, null or empty)")

    def construct_yaml_bool(self, node: Node) -> bool:
        return self._scalar(node, _BOOL, "a YAML 1.2 bool (true or false)") in _TRUE

    def construct_yaml_int(self, node: Node) -> int:
        value = self._scalar(node, _INT, "a YAML 1.2 int").replace("_", "")
        try:
            if value.startswith("0o"):
                return int(value[2:], 8)
            if value.startswith("0x"):
                return int(value[2:], 16)
            return int(value, 10)
        except ValueError:  # Python refuses decimal strings of more than 4300 digits
            raise StrictYAMLError(f"an int of {len(value)} digits", node.start_mark, " is too long") from None

    def construct_yaml_float(self, node: Node) -> float:
        # an explicit !!float may hold an int (`!!float 1` is 1.0)
        value = self.construct_scalar(node)
        if _INT.match(value) and not value.startswith(("0o", "0x")):
            value = value.replace("_", "")
        else:
            value = self._scalar(node, _FLOAT, "a YAML 1.2 float").replace("_", "")
        if _NAN.match(value):
            return float("nan")
        if _INFINITE.match(value):
            return float("-inf") if value.startswith("-") else float("inf")
        return float(value)


_RESOLVERS = [  # no value matches two patterns: a float needs a dot, an exponent or a dotted inf/nan
    (_NULL_TAG, _NULL, ["~", "n", "N", ""]),
    (_BOOL_TAG, _BOOL, list("tTfF")),
    (_INT_TAG, _INT, list("-+0123456789")),
    (_FLOAT_TAG, _FLOAT, list("-+.0123456789")),
]
for _tag, _pattern, _first in _RESOLVERS:
    SafeLoader.add_implicit_resolver(_tag, _pattern, _first)
for _name in ("str", "seq", "map"):
    _tag = _STANDARD + _name
    SafeLoader.add_constructor(_tag, yaml.SafeLoader.yaml_constructors[_tag])
SafeLoader.add_constructor(_NULL_TAG, SafeLoader.construct_yaml_null)
SafeLoader.add_constructor(_BOOL_TAG, SafeLoader.construct_yaml_bool)
SafeLoader.add_constructor(_INT_TAG, SafeLoader.construct_yaml_int)
SafeLoader.add_constructor(_FLOAT_TAG, SafeLoader.construct_yaml_float)
SafeLoader.add_constructor(None, yaml.SafeLoader.construct_undefined)  # any other tag: an error, never an object


class SafeDumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting each string that YAML 1.2 (:class:`SafeLoader`) or YAML 1.1 reads as another type.

    ``yaml.safe_dump`` quotes by YAML 1.1 only: it writes the string ``"1e-3"`` as ``1e-3`` and ``"0o17"``
    as ``0o17``, which :class:`SafeLoader` reads back as numbers. With both sets of resolvers a dumped
    config reads back the same with :func:`safe_load` and with ``yaml.safe_load``.
    """


for _tag, _pattern, _first in _RESOLVERS:
    SafeDumper.add_implicit_resolver(_tag, _pattern, _first)


def safe_dump(data: Any, **options: Any) -> str:
    """``yaml.dump`` with :class:`SafeDumper`: plain data only, read back the same by :func:`safe_load`.

    :param data: plain data (dicts, lists, str, int, float, bool, None)
    :param options: passed to ``yaml.dump`` (e.g. ``sort_keys=False, default_flow_style=None``)
    :return: the YAML text
    """
    text: str = yaml.dump(data, Dumper=SafeDumper, **options)
    return text


def safe_load(text: str, source: str = "<string>") -> Any:
    """Parse one YAML document with :class:`SafeLoader`: plain data only, nothing constructed or evaluated.

    :param text: the YAML text, at most :data:`MAX_BYTES` characters
    :param source: where the text came from, as messages name it (a file's path, ``"--set seed=1"``)
    :return: the document's data (``None`` for an empty document)
    :raises ConfigError: for every problem (too long, not YAML, refused by :class:`SafeLoader`),
        naming ``source`` and, where known, the line and column
    """
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{source} is too long: {len(text)} characters (at most {MAX_BYTES})")
    try:
        loader = SafeLoader(text)  # checks the characters already, so inside the try
        loader.name = source  # PyYAML's marks name it: 'in "<source>", line 3, column 5'
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except StrictYAMLError as exc:
        raise ConfigError(f"{source}: {_clip(str(exc))}") from None
    except yaml.YAMLError as exc:
        message = str(exc).replace("<unicode string>", source)
        raise ConfigError(f"{source} is not valid YAML: {_clip(message)}") from None


def read_yaml(path: str | PathLike[str]) -> dict[str, Any]:
    """Read a config file: a YAML mapping in UTF-8 (a byte order mark is fine), with :func:`safe_load`.

    :param path: the file
    :return: the mapping of config keys
    :raises ConfigError: if the file cannot be read, is larger than :data:`MAX_BYTES`, is not UTF-8,
        not valid YAML, refused by :class:`SafeLoader` or not a mapping
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)  # never more: the path may name a huge file or a device
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{path} is too large for a config file: more than {MAX_BYTES} bytes")
    result = safe_load(_decode(data, str(path)), source=str(path))
    if not isinstance(result, dict):
        raise ConfigError(
            f"{path} must hold a mapping of config keys (env, algo, policy, ...), got {type(result).__name__}"
        )
    return result


def _decode(data: bytes, source: str) -> str:
    """Strict UTF-8, a leading byte order mark dropped; the error names the first bad byte's offset."""
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        line = data.count(b"\n", 0, offset) + 1
        hint = " (it looks like UTF-16)" if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else ""
        raise ConfigError(
            f"{source} is not UTF-8 text (byte 0x{data[offset]:02x} at offset {offset}, line {line}){hint}: "
            "save it as UTF-8"
        ) from None


def shorten(value: Any, limit: int = 200) -> str:
    """The ``repr`` of a value for a message, cut to about ``limit`` characters with its full size said.

    ``shorten("x" * 5_000_000)`` is ``'xxxx...xxxx... (5000000 characters)`` in 200 characters;
    the full ``repr`` of a long string or a big container is never built.

    :param value: any value
    :param limit: the most characters of the result (the size marker included)
    :return: ``repr(value)`` if it is short enough, else its beginning and a size marker
    """
    if isinstance(value, str | bytes | bytearray):
        if len(value) <= limit and len(text := repr(value)) <= limit:
            return text
        text = repr(value[:limit])  # never the repr of the whole value
        size = f"{len(value)} {'characters' if isinstance(value, str) else 'bytes'}"
    else:
        short = reprlib.Repr()
        short.maxlevel = 3
        short.maxstring = short.maxother = short.maxlong = limit
        try:
            text = short.repr(value)
        except ValueError:  # an int of more than 4300 digits has no repr
            text = f"<int of {value.bit_length()} bits>" if isinstance(value, int) else f"<{type(value).__name__}>"
        if len(text) <= limit:
            return text
        size = f"{len(value)} items" if isinstance(value, Sized) else ""
    marker = f"... ({size})" if size else "..."
    return text[: max(limit - len(marker), 0)] + marker


def _clip(message: str) -> str:
    """A message cut in the middle to :data:`_MAX_MESSAGE` characters (PyYAML may quote a whole anchor)."""
    if len(message) <= _MAX_MESSAGE:
        return message
    half = _MAX_MESSAGE // 2
    return f"{message[:half]} ... ({len(message) - 2 * half} characters left out) ... {message[-half:]}"
