r"""MkDocs hook: typeset the pages' maths as MathML when the site is built.

``pymdownx.arithmatex`` (``generic: true``) leaves every formula as TeX, in
``<span class="arithmatex">\(...\)</span>`` and
``<div class="arithmatex">\[...\]</div>``, on the tutorial pages and in the
docstrings that mkdocstrings renders. This hook converts each one with
``latex2mathml`` (a dev dependency) into a ``<math>`` element, which browsers
render natively: the built site needs no script and no network.

A formula that does not convert, or converts to something that still holds
TeX (an unknown command, a stray ``&`` or ``\\``, a fraction without its
denominator), is reported as a warning naming the page and the formula,
which makes ``mkdocs build --strict`` fail.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET

from latex2mathml.converter import convert
from mkdocs.plugins import get_plugin_logger

log = get_plugin_logger("mathml")

NS = "http://www.w3.org/1998/Math/MathML"
ET.register_namespace("", NS)

_ARITHMATEX = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)
_INLINE = re.compile(r"\A\\\((.*)\\\)\Z", re.S)
_DISPLAY = re.compile(r"\A\\\[(.*)\\\]\Z", re.S)

# TeX that latex2mathml does not know, or gets wrong, rewritten into TeX it handles.
_PRE = [
    # amsmath's ``aligned`` (rl column pairs inside a display) is ``align*``'s table.
    (re.compile(r"\\(begin|end)\{aligned\}"), r"\\\1{align*}"),
    # latex2mathml 3.81 drops the upright style of a one-letter \mathrm{d}.
    (re.compile(r"\\mathrm\{\s*([A-Za-z])\s*\}"), r"{\\rm \1}"),
]

# Operands of each scripted or two-part element (latex2mathml accepts \frac{a).
_ARITY = {"mfrac": 2, "mroot": 2, "msub": 2, "msup": 2, "munder": 2, "mover": 2}
_ARITY |= {"msubsup": 3, "munderover": 3}
# Elements whose children are laid out in a row (the others place each child).
_ROWS = {"math", "mrow", "mtd", "mstyle", "msqrt", "mphantom", "mpadded", "menclose", "merror"}
_OPENING = set("([{|\u2016\u27e8\u230a\u2308")
_CLOSING = set(")]}|\u2016\u27e9\u230b\u2309!\u2032")
_SIGNS = {"+", "-", "\u2212", "\u00b1", "\u2213"}
_CAPITAL_GREEK = {chr(c) for c in range(0x391, 0x3AA)}
_NAME = re.compile(r"[A-Za-z]{2,}")


class MathConversionError(ValueError):
    """A formula that latex2mathml cannot turn into faithful MathML."""


def _tag(element: ET.Element) -> str:
    return element.tag.removeprefix(f"{{{NS}}}")


def _new(tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.Element(f"{{{NS}}}{tag}", attributes)
    element.text = text
    return element


def _check(root: ET.Element) -> None:
    for element in root.iter():
        tag = _tag(element)
        if tag == "mspace" and "linebreak" in element.attrib:
            raise MathConversionError("a line break '\\\\' outside a table environment")
        if tag in _ARITY and len(element) != _ARITY[tag]:
            raise MathConversionError(f"<{tag}> with {len(element)} operands instead of {_ARITY[tag]}")


def _is_spacing(element: ET.Element) -> bool:
    """An <mspace>, or the empty <mi/> latex2mathml puts after an alignment ``&``."""
    return _tag(element) == "mspace" or (_tag(element) == "mi" and not element.text and not len(element))


def _is_opening(element: ET.Element | None) -> bool:
    return element is not None and _tag(element) in ("mo", "mi") and element.text in _OPENING


def _is_operand(element: ET.Element | None) -> bool:
    """Whether TeX would treat ``element`` as an operand (an ordinary atom or a closing fence)."""
    if element is None:
        return False
    return _tag(element) != "mo" or (element.text or "") in _CLOSING


def _is_upright_letter(element: ET.Element) -> bool:
    text = element.text or ""
    upright = _tag(element) == "mi" and element.get("mathvariant") == "normal"
    return upright and len(text) == 1 and text.isalpha()


def _typeset_like_tex(parent: ET.Element) -> None:
    """Fix the spacing browsers give to latex2mathml's output, where it differs from TeX's."""
    row = _tag(parent) in _ROWS
    children: list[ET.Element] = []
    for i, child in enumerate(list(parent)):
        tag, text = _tag(child), child.text or ""
        previous = next((c for c in reversed(children) if not _is_spacing(c)), None)
        spaced = bool(children) and _tag(children[-1]) == "mspace"
        if tag in ("mi", "mo") and _NAME.fullmatch(text) and "mathvariant" not in child.attrib:
            # \max, \exp, \operatorname{round}: an upright name. As <mo> a browser
            # spaces it like a binary operator ("round ( x )"), as a bare <mi> it
            # sticks to its neighbours ("c max", "tanhx"). TeX: a thin space
            # after an operand and before one, none next to a parenthesis.
            child.tag, child.attrib = f"{{{NS}}}mi", {}
            following = parent[i + 1] if i + 1 < len(parent) else None
            if row and _is_operand(previous) and not spaced:
                children.append(_new("mspace", width="0.1667em"))
            children.append(child)
            if row:
                children.append(_new("mo", "\u2061"))
                if following is not None and not _is_opening(following):
                    children.append(_new("mspace", width="0.1667em"))
            continue
        if tag == "mi" and text in _CAPITAL_GREEK and "mathvariant" not in child.attrib:
            # TeX sets capital Greek upright (\Delta t); a browser slants a one-letter <mi>.
            child.set("mathvariant", "normal")
        elif tag == "mo" and (text == "/" or (text in ("|", "\u2016") and child.get("stretchy") == "false")):
            # TeX's /, | and \| are ordinary symbols: no space in x/s or inside |x|.
            child.set("lspace", "0")
            child.set("rspace", "0")
        elif tag == "mo" and text in _SIGNS and (not row or not _is_operand(previous)):
            # A sign that starts a row or follows an operator, a relation or an
            # opening fence is unary in TeX: -\theta, [-T, T].
            child.set("lspace", "0")
            child.set("rspace", "0")
        children.append(child)
    # \mathrm{Tag}: one <mi mathvariant="normal"> per letter; a single
    # multi-letter <mi> (upright by default) keeps the word's kerning.
    merged: list[ET.Element] = []
    run: ET.Element | None = None
    for child in children:
        if _is_upright_letter(child) and run is not None:
            run.text = (run.text or "") + (child.text or "")
            run.attrib.pop("mathvariant", None)
            continue
        run = child if _is_upright_letter(child) else None
        merged.append(child)
    parent[:] = merged
    for child in merged:
        _typeset_like_tex(child)


def _style_tables(root: ET.Element) -> None:
    """Restate MathML 3's table attributes as CSS, which is what Chromium follows.

    MathML Core drops ``columnalign``, ``columnspacing`` and ``rowspacing``;
    without them a browser centres every cell of ``cases`` and ``align*``
    and the ``=`` signs of an aligned display no longer line up.
    """
    for table in root.iter(f"{{{NS}}}mtable"):
        columns = (table.get("columnspacing") or "0.8em").split()
        rows = (table.get("rowspacing") or "1.0ex").split()
        trs = [tr for tr in table if _tag(tr) == "mtr"]
        for r, tr in enumerate(trs):
            above = "0" if r == 0 else f"calc({rows[min(r - 1, len(rows) - 1)]} / 2)"
            below = "0" if r == len(trs) - 1 else f"calc({rows[min(r, len(rows) - 1)]} / 2)"
            cells = [c for c in tr if _tag(c) == "mtd"]
            for c, td in enumerate(cells):
                left = "0" if c == 0 else f"calc({columns[min(c - 1, len(columns) - 1)]} / 2)"
                right = "0" if c == len(cells) - 1 else f"calc({columns[min(c, len(columns) - 1)]} / 2)"
                align = td.get("columnalign") or "center"
                td.set("style", f"text-align: {align}; padding: {above} {right} {below} {left}")


def tex_to_mathml(tex: str, display: bool) -> str:
    """The ``<math>`` element for ``tex`` (TeX without its ``\\(``/``\\[`` delimiters).

    Raises:
        MathConversionError: when the TeX does not convert faithfully.
    """
    source = tex.strip()
    if control := re.search(r"[\x00-\x09\x0b-\x1f\x7f]", source):
        # In a docstring that is not a raw string "\beta" is a backspace and "eta".
        raise MathConversionError(
            f"control character U+{ord(control.group(0)):04X} in the TeX: a backslash escape "
            '(\\b, \\f, \\a, \\v) in a Python string that is not raw (r"""...""")?'
        )
    for pattern, replacement in _PRE:
        source = pattern.sub(replacement, source)
    try:
        mathml = convert(source, display="block" if display else "inline")
    except Exception as exc:  # latex2mathml raises many exception types
        raise MathConversionError(f"latex2mathml failed: {type(exc).__name__}: {exc}") from exc
    if re.search(r"<mi>&(?:amp;)?</mi>", mathml):
        raise MathConversionError("an alignment '&' outside a table environment")
    # latex2mathml copies a command it does not know into the output as text
    # (it writes a real backslash, \backslash, as the entity &#x0005C;).
    if leftover := re.search(r">([^<]*\\[^<]*)<", mathml):
        raise MathConversionError(f"unsupported TeX command in {leftover.group(1).strip()!r}")
    try:
        root = ET.fromstring(mathml)
    except ET.ParseError as exc:
        raise MathConversionError(f"latex2mathml wrote malformed MathML ({exc})") from exc
    _check(root)
    _typeset_like_tex(root)
    _style_tables(root)
    return ET.tostring(root, encoding="unicode", short_empty_elements=True)


def convert_page(content: str, where: str) -> tuple[str, list[str]]:
    """``content`` with every arithmatex element's TeX replaced by MathML, and the errors."""
    errors: list[str] = []

    def replace(match: re.Match) -> str:
        tag, body = match.groups()
        tex = html.unescape(body).strip()
        if tag == "span" and (m := _INLINE.match(tex)):
            display, inner = False, m.group(1)
        elif tag == "div" and (m := _DISPLAY.match(tex)):
            display, inner = True, m.group(1)
        elif tag == "div" and tex.startswith("\\begin{"):
            display, inner = True, tex
        else:
            errors.append(f"{where}: unexpected arithmatex element {match.group(0)[:120]!r}")
            return match.group(0)
        try:
            mathml = tex_to_mathml(inner, display)
        except MathConversionError as exc:
            errors.append(f"{where}: formula {inner.strip()!r} does not convert to MathML: {exc}")
            return match.group(0)
        return f'<{tag} class="arithmatex">{mathml}</{tag}>'

    return _ARITHMATEX.sub(replace, content), errors


def on_page_content(html_content: str, page, **kwargs) -> str:
    converted, errors = convert_page(html_content, page.file.src_uri)
    for error in errors:
        log.warning(error)
    return converted
