"""dom0.web.xtermbundle: the distribution's xterm.js modules as one browser script
(run for real by the browser test; here its shape)."""

from __future__ import annotations

import os
from pathlib import Path

from dom0.web.xtermbundle import XTERM_LIB, bundle


def test_every_module_but_the_tests_is_wrapped(tmp_path: Path) -> None:
    (tmp_path / "public").mkdir()
    (tmp_path / "xterm.js").write_text('module.exports = require("./public/Terminal");')
    (tmp_path / "public" / "Terminal.js").write_text("exports.Terminal = 1;")
    (tmp_path / "public" / "Terminal.test.js").write_text('require("chai");')
    (tmp_path / "public" / "Terminal.js.map").write_text("{}")
    text = bundle(str(tmp_path)).decode()
    assert 'defs["xterm"] = function (require, module, exports)' in text
    assert 'defs["public/Terminal"]' in text and "exports.Terminal = 1;" in text
    assert "chai" not in text and "Terminal.test" not in text
    assert 'window.Terminal = load("xterm");' in text


def test_debians_node_xterm_bundles() -> None:
    assert os.path.isdir(XTERM_LIB), "node-xterm is in the Makefile's APT_PACKAGES"
    text = bundle().decode()
    assert 'defs["public/Terminal"]' in text and 'defs["InputHandler"]' in text
