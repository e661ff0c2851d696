"""The strict YAML loader: YAML 1.2 scalars, refused documents named by file, key and line, bounded work."""

from __future__ import annotations

import codecs
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from diffrl_core import strict_yaml
from diffrl_core.errors import ConfigError
from diffrl_core.strict_yaml import (
    MAX_ALIASES,
    MAX_BYTES,
    MAX_DEPTH,
    MAX_NODES,
    SafeLoader,
    StrictYAMLError,
    read_yaml,
    safe_dump,
    safe_load,
    shorten,
)

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))


def refused(text: str, *fragments: str, source: str = "c.yaml") -> str:
    """The message of the ConfigError that ``safe_load(text)`` raises; it names the source and each fragment."""
    with pytest.raises(ConfigError) as info:
        safe_load(text, source=source)
    message = str(info.value)
    assert message.startswith(source), message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # YAML 1.1 readings PyYAML gives, strings in YAML 1.2
        ("1:30", "1:30"),
        ("yes", "yes"),
        ("No", "No"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("n", "n"),
        ("2001-12-14", "2001-12-14"),
        ("2001-12-14 21:59:43.10 -5", "2001-12-14 21:59:43.10 -5"),
        ("0b101", "0b101"),
        ("=", "="),
        ("<<", "<<"),
        # null and bool
        ("~", None),
        ("null", None),
        ("NULL", None),
        ("", None),
        ("True", True),
        ("false", False),
        ("FALSE", False),
        ("tRUE", "tRUE"),
        # ints: leading zeros are decimal
        ("0777", 777),
        ("-0", 0),
        ("+12", 12),
        ("0o17", 15),
        ("0x1F", 31),
        ("1_000", 1000),
        ("1_000_000", 1000000),
        ("1__000", "1__000"),
        ("1_", "1_"),
        ("-0o17", "-0o17"),
        # floats, with or without a dot
        ("1e-3", 0.001),
        ("1.0e-3", 0.001),
        ("-2E+4", -20000.0),
        ("1.", 1.0),
        (".5", 0.5),
        ("1_000.5", 1000.5),
        (".inf", math.inf),
        ("-.Inf", -math.inf),
        ("+.INF", math.inf),
        ("v1e3", "v1e3"),
        ("1e", "1e"),
        ("inf", "inf"),
        # quoted scalars are strings, whatever they hold
        ("'yes'", "yes"),
        ('"1e-3"', "1e-3"),
        ("'0777'", "0777"),
        ("'null'", "null"),
        ("'true'", "true"),
    ],
)
def test_yaml_1_2_core_schema_scalars(text: str, expected: Any) -> None:
    value = safe_load(text)
    assert value == expected and type(value) is type(expected)
    assert safe_load(f"key: {text}") == {"key": expected}


def test_nan_and_keys_are_read_alike() -> None:
    assert math.isnan(safe_load(".NaN"))
    assert safe_load("{yes: 1, on: 2, 1:30: 3, 0777: 4}") == {"yes": 1, "on": 2, "1:30": 3, 777: 4}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("!!str 1", "1"), ("!!float 1", 1.0), ("!!int '0x1F'", 31), ("!!bool 'true'", True), ("!!null ''", None)],
)
def test_standard_tags_are_read(text: str, expected: Any) -> None:
    value = safe_load(text)
    assert value == expected and type(value) is type(expected)
    assert safe_load("!!map {a: !!seq [1]}") == {"a": [1]}


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("!!python/object:os.system {}", "!!python/object:os.system"),
        ("!!python/object/apply:os.system ['true']", "!!python/object/apply:os.system"),
        ("!!python/name:os.system ''", "!!python/name:os.system"),
        ("a: !!binary aGk=", "!!binary"),
        ("a: !!timestamp 2001-12-14", "!!timestamp"),
        ("a: !!set {x}", "!!set"),
        ("a: !!omap [x: 1]", "!!omap"),
        ("a: !custom x", "!custom"),
        ("%TAG !p! tag:yaml.org,2002:python/\n---\n!p!name:os.system ''", "!!python/name:os.system"),
    ],
)
def test_other_tags_are_refused(text: str, tag: str) -> None:
    refused(text, f"tag {tag!r}", "is not allowed")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("!!bool yes", "'yes' at line 1, column 1 is not a YAML 1.2 bool"),
        ("a: !!int abc", "'abc' at line 1, column 4 is not a YAML 1.2 int"),
        ("!!float 1:30", "'1:30' at line 1, column 1 is not a YAML 1.2 float"),
        ("!!null 0", "'0' at line 1, column 1 is not a YAML 1.2 null"),
    ],
)
def test_a_tagged_value_of_another_type_is_refused(text: str, fragment: str) -> None:
    refused(text, fragment)


def test_an_int_too_long_for_python_is_refused() -> None:
    refused("seed: " + "1" * 5000, "an int of 5000 digits at line 1, column 7 is too long")


def test_duplicate_keys_are_refused_naming_both_lines() -> None:
    text = "env: Pendulum-v1\npolicy:\n  head: a\nalgo: sac\npolicy:\n  head: b\n"
    refused(text, "duplicate key 'policy' at line 5, column 1 (first at line 2)")
    refused(
        "policy:\n  head: a\n  net_arch: [1]\n  head: b\n", "duplicate key 'head' at line 4, column 3 (first at line 2)"
    )
    refused("{1: a, 1.0: b}", "duplicate key 1.0 at line 1")


def test_merge_keys_are_refused_and_a_quoted_one_is_a_string() -> None:
    refused("base: &b {x: 1}\nrun:\n  <<: *b\n", "merge key '<<' at line 3, column 3", "not supported")
    assert safe_load("'<<': 1") == {"<<": 1}


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000,
        "{a: " * 100_000,
        "- " * 100_000 + "x",
        "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5)),
    ],
)
def test_deep_nesting_is_refused_without_recursion_error(text: str) -> None:
    refused(text, f"nesting deeper than {MAX_DEPTH} levels at line ")


def test_nesting_up_to_the_limit_is_read() -> None:
    # each collection and each scalar is a level
    assert safe_load("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    assert safe_load("[" * (MAX_DEPTH - 1) + "x" + "]" * (MAX_DEPTH - 1)) is not None
    refused("[" * MAX_DEPTH + "x" + "]" * MAX_DEPTH, f"nesting deeper than {MAX_DEPTH} levels at line 1, column 65")


def test_aliases_count_with_the_depth_they_expand_to() -> None:
    half = MAX_DEPTH // 2 + 1
    text = f"a: &a {'[' * half}{']' * half}\nb: {'[' * half}*a{']' * half}\n"
    refused(text, "nesting deeper than", "line 2")


def test_a_billion_laughs_is_refused() -> None:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    refused("\n".join(lines), f"more than {MAX_NODES} nodes")


def test_too_many_aliases_are_refused_and_a_few_are_read() -> None:
    assert safe_load("a: &a 1\nb: *a\nc: [*a, *a]") == {"a": 1, "b": 1, "c": [1, 1]}
    refused("a: &a 1\nb: [" + ", ".join(["*a"] * (MAX_ALIASES + 1)) + "]", f"at most {MAX_ALIASES} aliases")


def test_recursive_aliases_are_refused() -> None:
    refused("a: &a [1, *a]", "alias 'a' at line 1, column 11 is inside its own anchor")
    refused("a: *nope", "is not valid YAML", "undefined alias 'nope'", "line 1, column 4")


def test_too_many_nodes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # a lower limit keeps the test fast; the billion laughs above meets the real one
    monkeypatch.setattr(strict_yaml, "MAX_NODES", 1000)
    assert len(safe_load("[" + "0, " * 999 + "]")) == 999  # the list and its 999 items
    refused("[" + "0, " * 1000 + "]", "more than 1000 nodes", "line 1, column 2999")  # the list is a node too


def test_too_long_text_and_files_are_refused(tmp_path: Path) -> None:
    refused("#" * (MAX_BYTES + 1), "too long", str(MAX_BYTES))
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (MAX_BYTES + 1))
    with pytest.raises(ConfigError, match=f"{re.escape(str(path))} is too large .* {MAX_BYTES} bytes"):
        read_yaml(path)


def test_invalid_yaml_names_the_source_and_the_line(tmp_path: Path) -> None:
    refused("a: [1\nb: 2\n", "c.yaml is not valid YAML", 'in "c.yaml", line 1')
    refused("a: 1\n---\nb: 2\n", "is not valid YAML", "expected a single document")
    refused("a: \x00", "is not valid YAML", "unacceptable character", 'in "c.yaml"')
    path = tmp_path / "bad.yaml"
    path.write_text("env: [x\n")
    with pytest.raises(ConfigError, match=f"(?s){re.escape(str(path))} is not valid YAML.*line 1"):
        read_yaml(path)


def test_refused_documents_are_yaml_errors_for_the_loader_itself() -> None:
    # used directly, the loader raises a yaml.YAMLError as PyYAML's loaders do
    with pytest.raises(StrictYAMLError) as info:
        yaml.load("a: 1\na: 2\n", Loader=SafeLoader)  # noqa: S506 - the strict safe loader
    assert isinstance(info.value, yaml.YAMLError)


def test_non_utf8_files_are_refused_naming_the_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"env: Pendulum\nalgo: s\xe4c\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path} is not UTF-8 text (byte 0xe4 at offset 21, line 2)")):
        read_yaml(path)
    path.write_bytes("env: x\n".encode("utf-16"))
    with pytest.raises(ConfigError, match=r"byte 0xff at offset 0, line 1\) \(it looks like UTF-16\)"):
        read_yaml(path)


def test_a_byte_order_mark_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(codecs.BOM_UTF8 + "env: Pendulum-v1\nname: 'é'\n".encode())
    assert read_yaml(path) == {"env": "Pendulum-v1", "name": "é"}
    path.write_bytes(codecs.BOM_UTF8 + b"a: \xff")
    with pytest.raises(ConfigError, match="byte 0xff at offset 6"):
        read_yaml(path)


def test_read_yaml_wants_a_readable_mapping(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match=re.escape(f"cannot read config file {str(missing)!r}")):
        read_yaml(missing)
    with pytest.raises(ConfigError, match="cannot read config file"):
        read_yaml(tmp_path)
    path = tmp_path / "list.yaml"
    path.write_text("- env\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path} must hold a mapping of config keys") + ".*got list"):
        read_yaml(path)


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_the_example_configs_read_as_with_pyyaml(path: Path) -> None:
    assert read_yaml(path) == yaml.safe_load(path.read_text())


def test_shorten_keeps_messages_short() -> None:
    huge = "x" * 5 * 1024 * 1024
    short = shorten(huge)
    assert len(short) <= 200 and short.startswith("'xxx") and short.endswith("... (5242880 characters)")
    assert shorten("policy") == "'policy'" and shorten(1.5) == "1.5" and shorten({"a": [1]}) == "{'a': [1]}"
    assert shorten(b"\0" * 1000).endswith("... (1000 bytes)")
    assert len(shorten(list(range(10**6)), limit=20)) <= 20
    assert shorten(10**5000) == "<int of 16610 bits>"
    assert len(shorten("\0" * 100, limit=50)) <= 50  # escapes make a repr longer than its string


def test_huge_values_are_shortened_in_messages() -> None:
    key = "k" * 400_000  # an explicit key ('? '): PyYAML allows implicit ones up to 1024 characters
    message = refused(f"? {key}\n: 1\n? {key}\n: 2\n", "duplicate key 'kkk", "(400000 characters) at line 3")
    assert len(message) < 300


def test_safe_dump_reads_back_the_same_with_either_loader() -> None:
    data = {"a": "1e-3", "b": "0o17", "c": "yes", "d": 1e-5, "e": math.inf, "f": "1:30", "g": "0777", "h": None}
    data |= {"i": [1, 2.5, True, ""], "1e3": "-.Inf"}
    text = safe_dump(data, sort_keys=False, default_flow_style=None)
    assert "a: '1e-3'" in text and "b: '0o17'" in text
    assert safe_load(text) == data == yaml.safe_load(text)
