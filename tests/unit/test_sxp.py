"""dom0.model.sxp: parsing, one-line rendering and Xen's pretty-print layout."""

from __future__ import annotations

import pytest
from spec_samples import SPEC_XMEXAMPLE1

from dom0.model import sxp

# ---- parse ---------------------------------------------------------------


def test_parse_atoms_and_nested_lists() -> None:
    assert sxp.parse("(a (b c) d)") == [["a", ["b", "c"], "d"]]


def test_parse_several_top_level_forms() -> None:
    assert sxp.parse("(a 1)\n(b 2)  foo") == [["a", "1"], ["b", "2"], "foo"]


def test_parse_empty_text_and_empty_list() -> None:
    assert sxp.parse("") == []
    assert sxp.parse("  \n\t ") == []
    assert sxp.parse("()") == [[]]


def test_parse_single_and_double_quoted_strings() -> None:
    assert sxp.parse("(args 'root=/dev/sda1 ro')") == [["args", "root=/dev/sda1 ro"]]
    assert sxp.parse('(args "a b")') == [["args", "a b"]]
    # the other quote character is plain text inside a string
    assert sxp.parse("(x \"it's\")") == [["x", "it's"]]


def test_parse_string_escapes() -> None:
    text = r"(s 'a\'b' 'tab\there' 'nl\n' 'back\\slash' 'q\"')"
    assert sxp.parse(text) == [["s", "a'b", "tab\there", "nl\n", "back\\slash", 'q"']]


def test_parse_unknown_escape_keeps_the_character() -> None:
    assert sxp.parse(r"('\z')") == [["z"]]


def test_parse_empty_string_atom() -> None:
    assert sxp.parse("(fda '')") == [["fda", ""]]


def test_parse_quotes_and_parens_end_an_atom() -> None:
    assert sxp.parse("(a'b c'd)") == [["a", "b c", "d"]]
    assert sxp.parse("(a(b)c)") == [["a", ["b"], "c"]]


def test_parse_hash_comments_to_end_of_line() -> None:
    text = "# whole line\n(logfile /var/log/x.log) # trailing\n#(not-a-form)\n(a b)"
    assert sxp.parse(text) == [["logfile", "/var/log/x.log"], ["a", "b"]]


def test_parse_hash_inside_string_is_not_a_comment() -> None:
    assert sxp.parse("(x '# not a comment')") == [["x", "# not a comment"]]


def test_parse_hash_ends_an_atom() -> None:
    assert sxp.parse("(a b#comment\n c)") == [["a", "b", "c"]]


@pytest.mark.parametrize("text", ["(a (b c)", "((", "(a 'x')(", "(a # )\n"])
def test_parse_missing_close_paren(text: str) -> None:
    with pytest.raises(sxp.SxpSyntaxError, match="missing"):
        sxp.parse(text)


@pytest.mark.parametrize("text", [")", "(a))", "(a) )"])
def test_parse_unbalanced_close_paren(text: str) -> None:
    with pytest.raises(sxp.SxpSyntaxError, match="unbalanced"):
        sxp.parse(text)


@pytest.mark.parametrize("text", ["(a 'unterminated)", '"x', r"'ends in backslash\'"])
def test_parse_unterminated_string(text: str) -> None:
    with pytest.raises(sxp.SxpSyntaxError, match="unterminated"):
        sxp.parse(text)


def test_syntax_error_is_a_value_error() -> None:
    assert issubclass(sxp.SxpSyntaxError, ValueError)


def test_parse_one() -> None:
    assert sxp.parse_one(" (vm (name x)) ") == ["vm", ["name", "x"]]
    with pytest.raises(sxp.SxpSyntaxError, match="found 2"):
        sxp.parse_one("(a) (b)")
    with pytest.raises(sxp.SxpSyntaxError, match="found 0"):
        sxp.parse_one("# nothing\n")


# ---- to_string -------------------------------------------------------------


def test_to_string_plain_atoms_are_unquoted() -> None:
    assert sxp.to_string(["kernel", "/boot/vmlinuz-2.6.10-xenU"]) == \
        "(kernel /boot/vmlinuz-2.6.10-xenU)"
    assert sxp.to_string(["mac", "00:16:3e:00:00:01"]) == "(mac 00:16:3e:00:00:01)"


def test_to_string_quotes_atoms_with_spaces() -> None:
    assert sxp.to_string(["root", "/dev/hda1 ro"]) == "(root '/dev/hda1 ro')"
    assert sxp.to_string(["x", "a\tb"]) == "(x 'a\tb')"


def test_to_string_quotes_and_escapes_special_characters() -> None:
    assert sxp.to_string(["x", "a(b"]) == "(x 'a(b')"
    assert sxp.to_string(["x", "it's"]) == "(x 'it\\'s')"
    assert sxp.to_string(["x", "a\\b"]) == "(x 'a\\\\b')"
    assert sxp.to_string(["x", "a\nb"]) == "(x 'a\\nb')"


def test_to_string_empty_string_renders_as_nothing() -> None:
    assert sxp.to_string(["fda", ""]) == "(fda )"
    assert sxp.to_string("") == ""


def test_to_string_empty_list_and_nesting() -> None:
    assert sxp.to_string(["pci", []]) == "(pci ())"
    assert sxp.to_string(["device", ["vif"]]) == "(device (vif))"


def test_to_string_non_str_atoms_use_str() -> None:
    assert sxp.to_string(["memory", 64]) == "(memory 64)"  # type: ignore[list-item]


def test_to_string_quotes_comma_and_caret() -> None:
    # Regression guard: src/dom0/store/sxp.py atom_to_string only quotes whitespace and ()'"\;
    # Xen's sxp.atomp() leaves unquoted only [A-Za-z0-9.-_:/~]; spec §2.5 prints
    # `(cpus '0-3,^1')`, this renders `(cpus 0-3,^1)`.
    assert sxp.to_string(["cpus", "0-3,^1"]) == "(cpus '0-3,^1')"


@pytest.mark.parametrize("value", [
    ["vm", ["name", "x"], ["image", ["linux", ["root", "/dev/hda1 ro"], ["args", "it's \\ x"]]]],
    ["a", ["b", []], "c\nd", "x\ty"],
])
def test_to_string_parse_round_trip(value: sxp.Sxp) -> None:
    # (an empty atom renders as nothing, as Xen's did, so it cannot round-trip)
    assert sxp.parse_one(sxp.to_string(value)) == value


# ---- pretty ------------------------------------------------------------------


def test_pretty_short_form_stays_on_one_line() -> None:
    form = ["device", ["vbd", ["uname", "phy:hda1"], ["dev", "hda1"], ["mode", "w"]]]
    assert sxp.pretty(form) == "(device (vbd (uname phy:hda1) (dev hda1) (mode w)))"


def test_pretty_atom() -> None:
    assert sxp.pretty("abc") == "abc"
    assert sxp.pretty("a b") == "'a b'"


def _form_of_width(n: int) -> list[sxp.Sxp]:
    # "(k " + atom + ")" has width len(atom) + 4
    return ["k", "x" * (n - 4)]


def test_pretty_exactly_80_columns_fits() -> None:
    form = _form_of_width(80)
    assert len(sxp.to_string(form)) == 80
    assert sxp.pretty(form) == sxp.to_string(form)


def test_pretty_81_columns_breaks() -> None:
    form = _form_of_width(81)
    assert sxp.pretty(form) == "(k\n    " + "x" * 77 + "\n)"


def test_pretty_nested_fit_accounts_for_indent() -> None:
    fits = _form_of_width(76)  # at column 4: 4 + 76 = 80
    too_long = _form_of_width(77)
    text = sxp.pretty(["top", fits, too_long, ["s", "1"]])
    assert text.split("\n") == [
        "(top",
        "    " + sxp.to_string(fits),
        "    (k",
        "        " + "x" * 73,
        "    )",
        "    (s 1)",
        ")",
    ]


def test_pretty_width_and_indent_parameters() -> None:
    assert sxp.pretty(["a", "b", ["c", "d"]], width=8, indent=2) == "(a\n  b\n  (c d)\n)"
    assert sxp.pretty(["a", "b", ["c", "d"]], width=11) == "(a b (c d))"


def test_pretty_list_headed_by_a_list() -> None:
    form = [["h", "y" * 40], ["i", "z" * 40]]
    assert sxp.pretty(form) == (
        "(\n    (h " + "y" * 40 + ")\n    (i " + "z" * 40 + ")\n)"
    )





def test_pretty_matches_spec_xmexample1_block() -> None:
    """Spec §2.5, ``xm create -n -f xmexample1`` (built by hand here)."""
    form = [
        "vm",
        ["name", "ExampleDomain"],
        ["memory", "64"],
        ["vcpus", "1"],
        ["on_xend_start", "ignore"],
        ["on_xend_stop", "ignore"],
        ["image", ["linux",
                   ["kernel", "/boot/vmlinuz-2.6.10-xenU"],
                   ["root", "/dev/hda1 ro"],
                   ["videoram", "4"],
                   ["args", "4"]]],
        ["s3_integrity", "1"],
        ["device", ["vbd", ["uname", "phy:hda1"], ["dev", "hda1"], ["mode", "w"]]],
        ["device", ["vif"]],
    ]
    assert sxp.pretty(form) == SPEC_XMEXAMPLE1
    assert sxp.parse_one(sxp.pretty(form)) == form


# ---- accessors -----------------------------------------------------------------


def test_child_value_and_children() -> None:
    form = ["vm", ["name", "x"], ["device", ["vif"]], ["flag"], ["device", ["vbd"]]]
    assert sxp.child_value(form, "name") == "x"
    assert sxp.child_value(form, "flag") == ""
    assert sxp.child_value(form, "missing", "dflt") == "dflt"
    assert sxp.child_value("atom", "name") is None
    assert sxp.children(form, "device") == [["device", ["vif"]], ["device", ["vbd"]]]
    assert sxp.children("atom", "device") == []


def test_child_value_ignores_the_head() -> None:
    assert sxp.child_value(["name", ["other", "1"]], "name") is None


def test_found_deep_nesting_is_a_syntax_error_not_a_recursion_error() -> None:
    """Found fuzzing ``xm create -n -F``: 5,000 nested forms parsed, then printing them
    was a RecursionError ("Unexpected error")."""
    deep = "(a " * 5000 + ")" * 5000
    with pytest.raises(sxp.SxpSyntaxError, match=r"^forms nested deeper than 256 at offset 768$"):
        sxp.parse(deep)
    ok = "(a " * 256 + ")" * 256
    assert sxp.parse_one(sxp.pretty(sxp.parse_one(ok))) == sxp.parse_one(ok)
