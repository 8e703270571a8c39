"""The public names a Kotlin or Swift source file declares: top-level types, functions and constants, and the
functions of public types (Swift: `public`/`open` members, protocol requirements, members of public extensions).
Private, internal and protected declarations, and local functions inside function bodies, are left out.

A brace-depth scan, not a parser: enough for the two kits' plain formatting (one declaration a line), and
strict in the direction that matters: an added public function shows up."""

from __future__ import annotations

import re
from pathlib import Path

_KT_HIDDEN = re.compile(r"\b(private|internal|protected)\b")
_KT_TYPE = re.compile(r"^\s*((?:\w+\s+)*?)(?:class|interface|object)\b\s*(\w*)")
_KT_FUN = re.compile(r"^\s*((?:\w+\s+)*?)fun\s+(?:<[^>]*>\s*)?(?:[\w.<>]+\.)?(\w+)\s*\(")
_KT_VAL = re.compile(r"^((?:\w+\s+)*?)val\s+(\w+)")
_SW_TYPE = re.compile(r"^\s*((?:@\w+\s+)*(?:\w+\s+)*?)(class|struct|enum|protocol|extension)\s+(\w+)")
_SW_FUNC = re.compile(r"^\s*((?:@\w+\s+)*(?:\w+\s+)*?)func\s+(\w+)")
_SW_LET = re.compile(r"^((?:\w+\s+)*?)(?:let|var)\s+(\w+)")
_STRING = re.compile(r'"(?:\\.|[^"\\])*"')
_KT_CHAR = re.compile(r"'(?:\\u[0-9a-fA-F]{4}|\\.|[^'\\])'")


def _code(line: str, chars: bool) -> str:
    """The line without char literals (Kotlin), string literals and // comments: their braces are not blocks."""
    return _STRING.sub('""', _KT_CHAR.sub("' '", line) if chars else line).split("//")[0]


def _scan(path: Path, declare, chars: bool = False):
    """Run `declare(code, depth, enclosing)` per line; `enclosing` is the innermost open block's
    (kind, public) where kind is 'type', 'protocol', 'fun' or 'other'. `declare` returns the (kind, public)
    of a block the line's declaration opens (now or on a later line), or None."""
    stack: list[tuple[int, tuple[str, bool]]] = []
    pending: tuple[str, bool] | None = None
    depth = 0
    for raw in path.read_text("utf-8").splitlines():
        code = _code(raw, chars)
        while stack and depth < stack[-1][0]:
            stack.pop()
        enclosing = stack[-1][1] if stack else ("file", True)
        opened = declare(code, depth, enclosing)
        if opened is not None:
            pending = opened
        for ch in code:
            if ch == "{":
                depth += 1
                stack.append((depth, pending or ("other", enclosing[1])))
                pending = None
            elif ch == "}":
                depth -= 1
                while stack and depth < stack[-1][0]:
                    stack.pop()


def kotlin_names(folder: Path) -> set[str]:
    names: set[str] = set()

    def declare(code: str, depth: int, enclosing: tuple[str, bool]):
        kind, public = enclosing
        member_ok = depth == 0 or (kind == "type" and public)
        if m := _KT_TYPE.match(code):
            visible = public and not _KT_HIDDEN.search(m.group(1))
            if depth == 0 and visible and m.group(2):
                names.add(m.group(2))
            return ("type", visible)
        if m := _KT_FUN.match(code):
            visible = not _KT_HIDDEN.search(m.group(1))
            if visible and member_ok:
                names.add(m.group(2))
            return ("fun", False)
        if depth == 0 and (m := _KT_VAL.match(code)) and not _KT_HIDDEN.search(m.group(1)):
            names.add(m.group(2))
        return None

    for path in sorted(folder.rglob("*.kt")):
        _scan(path, declare, chars=True)
    return names


def swift_names(folder: Path) -> set[str]:
    names: set[str] = set()

    def declare(code: str, depth: int, enclosing: tuple[str, bool]):
        kind, public = enclosing
        if m := _SW_TYPE.match(code):
            visible = bool(re.search(r"\b(public|open)\b", m.group(1))) and (depth == 0 or public)
            if depth == 0 and visible and m.group(2) != "extension":
                names.add(m.group(3))
            block = "protocol" if m.group(2) == "protocol" else ("extension" if m.group(2) == "extension" else "type")
            return (block, visible)
        if m := _SW_FUNC.match(code):
            explicit = bool(re.search(r"\b(public|open)\b", m.group(1)))
            implicit = kind in ("protocol", "extension") and public and "private" not in m.group(1)
            if (explicit and (depth == 0 or (kind == "type" and public))) or implicit:
                names.add(m.group(2))
            return ("fun", False)
        if depth == 0 and (m := _SW_LET.match(code)) and re.search(r"\bpublic\b", m.group(1)):
            names.add(m.group(2))
        return None

    for path in sorted(folder.rglob("*.swift")):
        _scan(path, declare)
    return names
