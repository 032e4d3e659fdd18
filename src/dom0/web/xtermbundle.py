"""xterm.js for the browser, from the distribution's own files.

Debian 12's ``libjs-xterm`` ships a browser ``xterm.js`` that is only the package's
CommonJS entry point (``require("./public/Terminal")``), which no browser can load;
``node-xterm`` ships the library's compiled CommonJS modules.  xend bundles those
modules once into one script (each wrapped in a function, with a ``require`` that
resolves the relative names they use), which defines ``window.Terminal``."""

from __future__ import annotations

import json
import os

XTERM_LIB = "/usr/share/nodejs/xterm/lib"

_LOADER = """
  var cache = {};
  function resolve(from, name) {
    var parts = from.split("/").slice(0, -1);
    name.split("/").forEach(function (p) {
      if (p === "..") parts.pop(); else if (p !== ".") parts.push(p);
    });
    return parts.join("/").replace(/\\.js$/, "");
  }
  function load(name) {
    if (cache[name]) return cache[name].exports;
    if (!defs[name]) throw new Error("xterm bundle: no module " + name);
    var module = {exports: {}};
    cache[name] = module;
    defs[name](function (r) { return load(resolve(name, r)); }, module, module.exports);
    return module.exports;
  }
  window.Terminal = load("xterm");
"""


def bundle(lib: str = XTERM_LIB) -> bytes:
    """The modules under *lib* (tests left out) as one browser script."""
    parts = ["(function () {\n  var defs = {};\n"]
    for root, _dirs, files in sorted(os.walk(lib)):
        for name in sorted(files):
            if not name.endswith(".js") or name.endswith(".test.js"):
                continue
            path = os.path.join(root, name)
            module = os.path.relpath(path, lib)[:-3]
            with open(path, encoding="utf-8") as f:
                source = f.read()
            parts.append(f"  defs[{json.dumps(module)}] = function (require, module, exports) "
                         f"{{\n{source}\n}};\n")
    parts.append(_LOADER)
    parts.append("})();\n")
    return "".join(parts).encode()
