"""S-expressions as Xen wrote them: ``(name value)`` forms.

SXP only appears at the edges (xend-config.sxp, ``xm create -n``/``-F``,
``xm list -l``); inside, everything is typed.  An SXP value here is a ``str``
atom or a ``list`` of values.
"""

from __future__ import annotations

from typing import Union

Sxp = Union[str, list["Sxp"]]

#: characters an atom may hold and still be written bare; anything else is quoted
_BARE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:/~")


#: deeper nesting is refused: Xen's forms nest a handful of levels, and printing (which
#: recurses) must not meet Python's recursion limit on a form we accepted
MAX_DEPTH = 256


class SxpSyntaxError(ValueError):
    pass


def parse(text: str) -> list[Sxp]:
    """Parse every top-level form in *text*.  ``#`` starts a comment outside strings."""
    pos = 0
    n = len(text)
    stack: list[list[Sxp]] = [[]]
    while pos < n:
        c = text[pos]
        if c.isspace():
            pos += 1
        elif c == "#":
            while pos < n and text[pos] != "\n":
                pos += 1
        elif c == "(":
            if len(stack) > MAX_DEPTH:
                raise SxpSyntaxError(f"forms nested deeper than {MAX_DEPTH} at offset {pos}")
            stack.append([])
            pos += 1
        elif c == ")":
            if len(stack) == 1:
                raise SxpSyntaxError(f"unbalanced ')' at offset {pos}")
            done = stack.pop()
            stack[-1].append(done)
            pos += 1
        elif c in "'\"":
            atom, pos = _read_string(text, pos)
            stack[-1].append(atom)
        else:
            start = pos
            while pos < n and not text[pos].isspace() and text[pos] not in "()'\"#":
                pos += 1
            stack[-1].append(text[start:pos])
    if len(stack) != 1:
        raise SxpSyntaxError("unexpected end of input: missing ')'")
    return stack[0]


def parse_one(text: str) -> Sxp:
    forms = parse(text)
    if len(forms) != 1:
        raise SxpSyntaxError(f"expected one form, found {len(forms)}")
    return forms[0]


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}


def _read_string(text: str, pos: int) -> tuple[str, int]:
    quote = text[pos]
    pos += 1
    out = []
    while pos < len(text):
        c = text[pos]
        if c == "\\" and pos + 1 < len(text):
            out.append(_ESCAPES.get(text[pos + 1], text[pos + 1]))
            pos += 2
        elif c == quote:
            return "".join(out), pos + 1
        else:
            out.append(c)
            pos += 1
    raise SxpSyntaxError("unterminated string")


def atom_to_string(atom: str) -> str:
    if atom == "":
        return ""
    if any(c not in _BARE for c in atom):
        escaped = atom.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
        return f"'{escaped}'"
    return atom


def to_string(value: Sxp) -> str:
    """One-line rendering."""
    if isinstance(value, list):
        return "(" + " ".join(to_string(v) for v in value) + ")"
    return atom_to_string(str(value))


def pretty(value: Sxp, width: int = 80, indent: int = 4) -> str:
    """Xen's pretty-print: a form that fits on the rest of the line stays on one
    line; otherwise its head stays on the first line, each child goes on its own
    line indented by *indent*, and ``)`` closes on a line of its own."""
    lines: list[str] = []
    _pretty(value, 0, width, indent, lines)
    return "\n".join(lines)


def _pretty(value: Sxp, col: int, width: int, indent: int, lines: list[str]) -> None:
    pad = " " * col
    flat = to_string(value)
    if not isinstance(value, list) or col + len(flat) <= width or not value:
        lines.append(pad + flat)
        return
    head = value[0]
    rest = value[1:]
    if isinstance(head, list):
        lines.append(pad + "(")
        rest = value
    else:
        lines.append(pad + "(" + atom_to_string(head))
    for child in rest:
        _pretty(child, col + indent, width, indent, lines)
    lines.append(pad + ")")


def child_value(form: Sxp, key: str, default: Sxp | None = None) -> Sxp | None:
    """Value of the first ``(key value)`` child of *form*."""
    if isinstance(form, list):
        for child in form[1:]:
            if isinstance(child, list) and child and child[0] == key:
                return child[1] if len(child) > 1 else ""
    return default


def children(form: Sxp, key: str) -> list[list[Sxp]]:
    """Every ``(key ...)`` child of *form*."""
    if not isinstance(form, list):
        return []
    return [c for c in form[1:] if isinstance(c, list) and c and c[0] == key]
