"""Write docs/reference.md from the code: every public name and its signature.

Usage::

    .venv/bin/python docs/gen_reference.py          # rewrite docs/reference.md
    .venv/bin/python docs/gen_reference.py --check  # exit 1 if it is stale
    .venv/bin/python docs/gen_reference.py --list   # the public names

Public means: a module whose dotted path has no ``_``-prefixed part, and the
names in its ``__all__``. A name re-exported from another public module is
documented once, where it is defined, and linked from the others. Django is
configured with a minimal in-memory setup so the Django-only modules import.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "reference.md"

HEADER = """\
# API reference

Every public module of achannels and the names in its `__all__`, with
signatures and docstrings. Generated from the code by
`python docs/gen_reference.py`; do not edit by hand (`--check` tells whether
this file is current). For how the pieces fit together, read
[Concepts](concepts.md).
"""


def setup_django() -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            INSTALLED_APPS=[
                "achannels",
                "django.contrib.auth",
                "django.contrib.contenttypes",
                "django.contrib.sessions",
            ],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3"}},
            USE_TZ=True,
        )
        django.setup()


def public_modules() -> list[ModuleType]:
    import achannels

    names = ["achannels"]
    for info in pkgutil.walk_packages(achannels.__path__, "achannels."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    modules = [importlib.import_module(name) for name in sorted(names)]
    return [m for m in modules if getattr(m, "__all__", None) is not None]


def anchor(text: str) -> str:
    """GitHub's heading anchor for ``text``."""
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


class _Shown(str):
    """An annotation string shown as written, not quoted."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def _unquoted(annotation: Any) -> Any:
    return _Shown(annotation) if isinstance(annotation, str) else annotation


def signature(obj: Any, *, constructor: bool = False) -> str:
    """``obj``'s signature with annotations as written in the source
    (modules use ``from __future__ import annotations``)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    params = [
        p.replace(annotation=_unquoted(p.annotation)) for p in sig.parameters.values()
    ]
    returns = (
        inspect.Signature.empty if constructor else _unquoted(sig.return_annotation)
    )
    return str(sig.replace(parameters=params, return_annotation=returns))


_ROLE = re.compile(r":(?:class|meth|attr|data|func|exc|mod|obj):`(~?)([^`]+)`")


def _markdown(text: str) -> str:
    """Docstring reST idioms as Markdown: roles and double backticks become
    code spans, a trailing ``::`` a colon (the indented block after it is
    already a Markdown code block)."""
    text = _ROLE.sub(
        lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`",
        text,
    )
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    return re.sub(r"::$", ":", text, flags=re.MULTILINE)


def doc(obj: Any) -> str:
    return _markdown(inspect.getdoc(obj) or "")


def first_paragraph(text: str) -> str:
    return " ".join(text.split("\n\n", 1)[0].split())


def is_async(func: Any) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)


def own_methods(cls: type) -> list[tuple[str, Any]]:
    """Public methods a class defines itself (inherited ones are documented
    on the base class), in source order."""
    found = []
    for name, value in cls.__dict__.items():
        if name.startswith("_") and name != "__call__":
            continue
        if isinstance(value, (staticmethod, classmethod)):
            found.append((name, value.__func__))
        elif inspect.isfunction(value):
            found.append((name, value))
        elif isinstance(value, property):
            found.append((name, value))
    return found


def own_attributes(cls: type) -> list[tuple[str, Any]]:
    found = []
    for name, value in cls.__dict__.items():
        if name.startswith("_") or callable(value):
            continue
        if isinstance(value, (property, staticmethod, classmethod)):
            continue
        if isinstance(value, (str, int, float, bool, tuple, frozenset, type(None))):
            shown = repr(value)
            if len(shown) <= 60:
                found.append((name, shown))
    return found


def render_method(name: str, value: Any) -> str:
    if isinstance(value, property):
        line = f"- `{name}` (property)"
        summary = first_paragraph(doc(value))
    else:
        params = signature(value)
        params = re.sub(r"^\((self|cls)(, )?", "(", params)
        prefix = "async " if is_async(value) else ""
        line = f"- `{prefix}{name}{params}`"
        summary = first_paragraph(doc(value))
    return f"{line}: {summary}" if summary else line


def render_name(module: ModuleType, name: str, obj: Any) -> list[str]:
    lines = [f"### `{name}`", ""]
    if inspect.isclass(obj):
        bases = [b for b in obj.__bases__ if b is not object]
        shown_bases = ", ".join(b.__name__ for b in bases)
        head = f"class {name}({shown_bases})" if bases else f"class {name}"
        lines += [
            "```python",
            head,
            f"{name}{signature(obj, constructor=True)}",
            "```",
            "",
        ]
        if doc(obj):
            lines += [doc(obj), ""]
        attributes = own_attributes(obj)
        if attributes:
            shown = ", ".join(f"`{n} = {v}`" for n, v in attributes)
            lines += [f"Attributes: {shown}", ""]
        methods = own_methods(obj)
        if methods:
            lines += [render_method(n, v) for n, v in methods]
            lines.append("")
    elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
        prefix = "async def" if is_async(obj) else "def"
        lines += ["```python", f"{prefix} {name}{signature(obj)}", "```", ""]
        if doc(obj):
            lines += [doc(obj), ""]
    else:
        shown = repr(obj) if isinstance(obj, (str, int, float, bool)) else None
        value = shown if shown is not None else f"<{type(obj).__name__} instance>"
        lines += ["```python", f"{name} = {value}", "```", ""]
        plain = isinstance(obj, (str, int, float, bool, dict, list, tuple))
        if not plain and doc(type(obj)):
            kind = type(obj).__name__
            lines += [f"An instance of `{kind}`: {first_paragraph(doc(type(obj)))}", ""]
    return lines


def home_of(obj: Any, documented: dict[str, ModuleType]) -> str | None:
    """The public module that defines ``obj`` and exports it, if any."""
    module_name = getattr(obj, "__module__", None)
    if not isinstance(module_name, str) or module_name not in documented:
        return None
    home = documented[module_name]
    name = getattr(obj, "__name__", None)
    if name in getattr(home, "__all__", ()):
        return module_name
    return None


def generate() -> str:
    setup_django()
    modules = public_modules()
    documented = {m.__name__: m for m in modules}
    out = [HEADER, "## Modules", ""]
    out += [f"- [`{m.__name__}`](#{anchor(m.__name__)})" for m in modules]
    out.append("")
    for module in modules:
        out += [f"## `{module.__name__}`", ""]
        summary = first_paragraph(doc(module))
        if summary:
            out += [summary, ""]
        if not module.__all__:
            out += ["No public names of its own.", ""]
        for name in sorted(module.__all__, key=str.casefold):
            obj = getattr(module, name)
            home = home_of(obj, documented)
            if home is not None and home != module.__name__:
                out += [
                    f"### `{name}`",
                    "",
                    f"Re-exported from [`{home}`](#{anchor(home)}).",
                    "",
                ]
                continue
            out += render_name(module, name, obj)
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if stale")
    parser.add_argument(
        "--list", action="store_true", help="print module.name for each public name"
    )
    args = parser.parse_args(argv)
    if args.list:
        setup_django()
        for module in public_modules():
            for name in module.__all__:
                print(f"{module.__name__}.{name}")
        return 0
    text = generate()
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is stale: run python docs/gen_reference.py")
            return 1
        print(f"{OUTPUT} is current")
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
