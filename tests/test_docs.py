"""The documentation builds strictly, its figures can be redrawn, and the demo runs.

The code on the tutorial pages is executed by pytest-markdown-docs
(``--markdown-docs`` in ``pyproject.toml``), each ``python`` block as a test.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "site"  # where a plain `mkdocs build` writes (gitignored)
HOOK = ROOT / "docs" / "hooks" / "mathml.py"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
ARITHMATEX = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)


def _user_env() -> dict[str, str]:
    """The user's environment, with this interpreter's bin directory (the venv's) first on PATH."""
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": os.pathsep.join([bindir, os.environ.get("PATH", "")])}


def _mkdocs(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = _user_env()
    assert shutil.which("mkdocs", path=env["PATH"]), "mkdocs is not installed (pip install -e '.[dev]')"
    return subprocess.run(
        ["mkdocs", *args], cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _warnings(output: str) -> list[str]:
    """MkDocs' WARNING log lines (Material's end-of-life banner is not one)."""
    return [line for line in ANSI.sub("", output).splitlines() if re.match(r"\s*WARNING\b", line)]


@pytest.fixture(scope="module")
def strict_build() -> subprocess.CompletedProcess:
    """`mkdocs build --strict`, exactly as the README has a user type it in the repository root."""
    return _mkdocs(["build", "--strict"], ROOT)


def test_mkdocs_build_strict(strict_build):
    assert strict_build.returncode == 0, strict_build.stdout
    assert not _warnings(strict_build.stdout), strict_build.stdout
    assert (SITE / "eiif" / "index.html").exists()


def _pages() -> dict[str, str]:
    return {str(p.relative_to(SITE)): p.read_text(encoding="utf-8") for p in SITE.rglob("*.html")}


def test_built_pages_carry_their_maths_as_mathml(strict_build):
    assert strict_build.returncode == 0, strict_build.stdout
    pages = _pages()
    for page in ("eiif/index.html", "operators/index.html", "llm/index.html", "api/functional/index.html"):
        assert "<math " in pages[page], page
    assert 'display="block"' in pages["eiif/index.html"]
    raw = []
    for name, text in pages.items():
        for match in ARITHMATEX.finditer(text):
            body = match.group(2)
            if not body.startswith("<math ") or any(t in body for t in ("\\(", "\\[", "\\begin")):
                raw.append(f"{name}: {body[:100]!r}")
    assert not raw, "TeX left unconverted:\n" + "\n".join(raw)
    assert sum(len(ARITHMATEX.findall(t)) for t in pages.values()) > 100


def test_built_pages_load_nothing_from_the_network(strict_build):
    """No script, stylesheet, font or image from another host: the site renders offline."""
    assert strict_build.returncode == 0, strict_build.stdout
    remote = r"""\s*["']?\s*(?:https?:)?//"""
    loads = [
        re.compile(r"<(?:script|img|iframe|source|audio|video|embed)\b[^>]*\ssrc=" + remote, re.I),
        re.compile(r"""<link\b(?![^>]*\srel=["']?(?:canonical|alternate)\b)[^>]*\shref=""" + remote, re.I),
        re.compile(r"url\(" + remote, re.I),
        re.compile(r"@import\s+(?:url\()?" + remote, re.I),
    ]
    found = []
    for path in [*SITE.rglob("*.html"), *SITE.rglob("*.css")]:
        text = path.read_text(encoding="utf-8")
        for pattern in loads:
            found += [f"{path.relative_to(SITE)}: {m.group(0)}" for m in pattern.finditer(text)]
    assert not found, "\n".join(found)


def _load_hook():
    spec = importlib.util.spec_from_file_location("bt_docs_mathml_hook", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mathml_hook_typesets_like_tex():
    hook = _load_hook()
    aligned = r"\begin{aligned} a &= b \\ c &= \operatorname{round}(x) \end{aligned}"
    aligned = hook.tex_to_mathml(aligned, True)
    assert aligned.startswith('<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">')
    assert "<mtable" in aligned and "text-align: right" in aligned and "text-align: left" in aligned
    assert "<mi>round</mi>" in aligned and "<mo>round</mo>" not in aligned
    assert '<mo lspace="0" rspace="0">\u2212</mo>' in hook.tex_to_mathml("[-T, T]", False)  # unary minus
    assert '<mi mathvariant="normal">d</mi>' in hook.tex_to_mathml(r"\mathrm{d}x", False)
    assert "<mi>Tag</mi>" in hook.tex_to_mathml(r"\mathrm{Tag}_{ij}", False)
    cases = r"S = \begin{cases} +1 & H \ge \theta \\ 0 & \text{otherwise}\end{cases}"
    cases = hook.tex_to_mathml(cases, True)
    assert "<mtext>otherwise</mtext>" in cases and 'stretchy="true"' in cases
    for bad in (r"\foo{x}", r"\frac{a", r"a & b", r"a \\ b", r"x^", r"\text{a\_b}", "\x08eta"):
        with pytest.raises(hook.MathConversionError):
            hook.tex_to_mathml(bad, False)


def test_a_formula_that_does_not_convert_fails_the_strict_build(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(
        "# Maths\n\nGood $x^2$, unknown $\\foo{x}$.\n\n$$\n\\frac{a}\n$$\n", encoding="utf-8"
    )
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: t\nmarkdown_extensions:\n  - pymdownx.arithmatex:\n      generic: true\n"
        f"hooks:\n  - {HOOK.as_posix()}\n",
        encoding="utf-8",
    )
    result = _mkdocs(["build", "--strict"], tmp_path)
    assert result.returncode != 0, result.stdout
    warnings = "\n".join(_warnings(result.stdout))
    assert "index.md" in warnings and "\\foo{x}" in warnings and "\\frac{a}" in warnings, result.stdout


def test_docstring_maths_survives_python_escapes():
    """``"$\\tau$"`` in a docstring that is not raw is a tab and "au": Markdown then shows "au"."""
    mangled = []
    for folder in ("bt_neurons", "models", "approximators"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                    doc = ast.get_docstring(node, clean=False) or ""
                    if "$" in doc and re.search(r"[\x00-\x09\x0b-\x1f]", doc):
                        mangled.append(f"{path.relative_to(ROOT)}:{node.body[0].lineno}")
    assert not mangled, 'docstrings to make raw (r"""..."""):\n' + "\n".join(mangled)


def test_figures_script_draws_every_picture(tmp_path):
    sys.path.insert(0, str(ROOT / "docs" / "figures"))
    try:
        import make_figures
    finally:
        sys.path.pop(0)
    paths = make_figures.main([str(tmp_path)])
    for p in paths:
        assert p.stat().st_size > 10_000
        assert (ROOT / "docs" / "img" / p.name).exists(), f"docs/img/{p.name} is not committed"


def test_demo_runs_and_both_paths_agree(capsys):
    from bt_neurons.demo import main

    assert main(["1.2", "-3.5", "0.49", "--timesteps", "4"]) == 0
    out = capsys.readouterr().out
    assert "spike path == count path: True" in out
    assert "-3.500  ----" in out  # -3.5 rounds away from zero to -4


def test_demo_rejects_bad_timesteps():
    from bt_neurons.demo import main

    with pytest.raises(SystemExit) as exc:
        main(["--timesteps", "0"])
    assert exc.value.code == 2
