"""Reading and writing ``id_map.yaml`` quickly, in a shape PaddleX can read.

PyYAML needs ~20 s to dump and ~26 s to load a one-million-entry id map, even with
libyaml. Our writer emits the large sections (``id_map``, ``metadata``...) line by line,
one ``  <id>: <scalar>`` per entry, and our reader parses exactly that grammar with plain
string operations. Anything it does not recognise (a PaddleX file, a hand edit) is
parsed by PyYAML instead, so the fast path is an optimisation, never a dialect.
"""
from __future__ import annotations

import re
from typing import Any

import yaml

from viewfinder.errors import RetrievalIndexError

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_RESOLVERS = yaml.resolver.Resolver.yaml_implicit_resolvers
_WILDCARD = list(_RESOLVERS.get(None, []))

MARKER = "# viewfinder index metadata"
# Large sections, written after the small header, in this order.
INT_LIST_SECTIONS = ("deleted_ids",)
MAP_SECTIONS = ("metadata", "metadata_json", "id_map")
_SECTION_RE = re.compile(r"^(deleted_ids|metadata|metadata_json|id_map):(?: (.*))?$", re.M)
_ENTRY_RE = re.compile(r"^  (-?\d+): (.*)$", re.M)
_QUOTED_BODY_RE = re.compile(r'(?:[^"\\]|\\(?:x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|["\\]))*')
_ESCAPE_RE = re.compile(r'\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|["\\])')
_INDICATOR_FIRST = set("-?:,[]{}#&*!|>'\"%@`")


class _NotFastFormat(Exception):
    """The text is valid YAML, just not in the grammar our fast reader handles."""


def plain_ok(s: str) -> bool:
    """True when ``s`` written unquoted reads back from YAML as the same string."""
    if not s or s[0] in _INDICATOR_FIRST or ":" in s or "#" in s:
        return False
    if not s.isprintable() or s[0] == " " or s[-1] == " ":
        return False
    if s[0] in _RESOLVERS or _WILDCARD:
        for _tag, rx in _RESOLVERS.get(s[0], []) + _WILDCARD:
            if rx.match(s):  # would read back as a bool/int/float/null/timestamp
                return False
    return True


def quote(s: str) -> str:
    """A YAML double-quoted scalar; escapes only what YAML cannot hold literally."""
    if s.isprintable() and '"' not in s and "\\" not in s:
        return f'"{s}"'
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code <= 0xFF else
                       f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def scalar(s: str) -> str:
    return s if plain_ok(s) else quote(s)


def _unescape(m: re.Match[str]) -> str:
    esc = m.group(1)
    return esc if esc in ('"', "\\") else chr(int(esc[1:], 16))


def _read_scalar(text: str) -> str:
    if text.startswith('"'):
        body = text[1:-1]
        if len(text) < 2 or not text.endswith('"') or not _QUOTED_BODY_RE.fullmatch(body):
            raise _NotFastFormat
        return _ESCAPE_RE.sub(_unescape, body) if "\\" in body else body
    if not plain_ok(text):
        raise _NotFastFormat
    return text


def dump(doc: dict[str, Any]) -> str:
    """Serialise ``doc``: small keys via PyYAML, then the large sections line by line."""
    header = {k: v for k, v in doc.items() if k not in INT_LIST_SECTIONS + MAP_SECTIONS}
    parts = [MARKER + " (PaddleX reads index_type, metric_type and id_map)\n",
             yaml.dump(header, Dumper=_Dumper, allow_unicode=True, sort_keys=False,
                       default_flow_style=False, width=1 << 30)]
    for key in INT_LIST_SECTIONS:
        if key in doc:
            parts.append(f"{key}: [{', '.join(str(int(i)) for i in doc[key])}]\n")
    for key in MAP_SECTIONS:
        if key not in doc:
            continue
        mapping = doc[key]
        if not mapping:
            parts.append(f"{key}: {{}}\n")
            continue
        parts.append(f"{key}:\n")
        cache: dict[str, str] = {}  # labels repeat a lot; encode each distinct one once
        lines = []
        for k in sorted(mapping):
            v = mapping[k]
            enc = cache.get(v)
            if enc is None:
                enc = cache[v] = scalar(v)
            lines.append(f"  {int(k)}: {enc}\n")
        parts.append("".join(lines))
    return "".join(parts)


def _fast_load(text: str) -> dict[str, Any]:
    heads = list(_SECTION_RE.finditer(text))
    doc = yaml.load(text[: heads[0].start()] if heads else text, Loader=_Loader)
    if not isinstance(doc, dict):
        raise _NotFastFormat
    for n, head in enumerate(heads):
        key, inline = head.group(1), head.group(2)
        body = text[head.end() + 1: heads[n + 1].start() if n + 1 < len(heads) else len(text)]
        if key in doc:
            raise _NotFastFormat
        if key in INT_LIST_SECTIONS:
            if body.strip() or inline is None or not (inline.startswith("[") and inline.endswith("]")):
                raise _NotFastFormat
            items = inline[1:-1].strip()
            try:
                doc[key] = [int(t) for t in items.split(",")] if items else []
            except ValueError:
                raise _NotFastFormat from None
        elif inline == "{}":
            if body.strip():
                raise _NotFastFormat
            doc[key] = {}
        elif inline is None:
            # One C-level regex pass over the whole section, then check it covered every line.
            entries = _ENTRY_RE.findall(body)
            if len(entries) != body.count("\n") + (0 if body.endswith("\n") or not body else 1):
                raise _NotFastFormat
            decoded: dict[str, str] = {}  # raw scalar text -> value; labels repeat a lot
            section: dict[int, str] = {}
            for k, raw in entries:
                value = decoded.get(raw)
                if value is None:
                    value = decoded[raw] = _read_scalar(raw)
                section[int(k)] = value
            doc[key] = section
        else:
            raise _NotFastFormat
    return doc


def load(text: str, source: str = "id_map.yaml") -> Any:
    """Parse ``text``; our own files take the fast path, anything else goes through PyYAML."""
    if text.startswith(MARKER):
        try:
            return _fast_load(text)
        except (_NotFastFormat, yaml.YAMLError):
            pass
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise RetrievalIndexError(f"{source} is not valid YAML: {exc}") from None


def read_header(path: str) -> dict[str, Any] | None:
    """The small header of one of our files (without reading the id map); None otherwise."""
    lines = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = fh.readline()
        if not first.startswith(MARKER):
            return None
        for line in fh:
            if _SECTION_RE.match(line):
                break
            lines.append(line)
    try:
        head = yaml.load("".join(lines), Loader=_Loader)
    except yaml.YAMLError:
        return None
    return head if isinstance(head, dict) else None
