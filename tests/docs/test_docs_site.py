"""The documentation site (mkdocs.yml, docs/) builds and cannot drift from the code.

- ``mkdocs build --strict`` succeeds (every warning, including a broken link or a page left
  out of the nav, is an error). Skipped only when mkdocs is not installed and
  ``HWSIM_REQUIRE_DOCS`` is unset; CI sets it, so there a missing mkdocs fails.
- Every ``hwsim`` subcommand has a page whose generated option block matches the parser
  (``python docs/gen_cli_pages.py`` rewrites it) and which names every option ``--help``
  lists.
- Every key of ``hwsim run --json`` (on a GPU and on a systolic part, whose output carries the
  silicon model's keys) is documented, by its full path, on the JSON-contract page.
- Every field the spec loader accepts (read from the loader's own tables and ``mapping()``
  calls, not from a hand-written list) is documented on the spec-format page, as are the
  values of its enumerations and the process-node figures of ``arch_specs/process/nodes.yaml``.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
_spec = importlib.util.spec_from_file_location("gen_cli_pages", DOCS / "gen_cli_pages.py")
assert _spec is not None and _spec.loader is not None
gen_cli_pages = importlib.util.module_from_spec(_spec)  # docs/ is not a package
_spec.loader.exec_module(gen_cli_pages)


def _page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _code_spans(text: str) -> set[str]:
    """The contents of every inline code span of a markdown page."""
    return set(re.findall(r"`([^`\n]+)`", text))


# -- (a) the site builds with warnings as errors --------------------------------------------
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    have = all(importlib.util.find_spec(m) is not None for m in ("mkdocs", "material"))
    if not have:
        if os.environ.get("HWSIM_REQUIRE_DOCS"):
            pytest.fail("HWSIM_REQUIRE_DOCS is set but mkdocs/mkdocs-material is not "
                        "installed (pip install -e '.[docs]')")
        pytest.skip("mkdocs-material not installed (set HWSIM_REQUIRE_DOCS to fail instead)")
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                        "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert (site / "index.html").is_file()
    assert (site / "spec-format" / "index.html").is_file()


# -- (b) a page per command, with every option ----------------------------------------------
def test_generated_command_pages_are_up_to_date() -> None:
    stale = [str(p.relative_to(ROOT)) for p, text in gen_cli_pages.expected().items()
             if not p.exists() or p.read_text(encoding="utf-8") != text]
    assert not stale, f"out of date: {stale}; run: python docs/gen_cli_pages.py"


def test_every_command_has_a_page_listing_every_option() -> None:
    cmds = gen_cli_pages.subcommands()
    assert {"run", "op", "compare", "plan", "serve", "train", "explore", "validate",
            "calibrate", "scalesim", "edge-vs-cloud"} <= set(cmds)
    for name, (parser, _) in cmds.items():
        page = DOCS / "commands" / f"{name}.md"
        assert page.is_file(), f"hwsim {name} has no page; run: python docs/gen_cli_pages.py"
        spans = _code_spans(page.read_text(encoding="utf-8"))
        listed = gen_cli_pages.options(parser)
        # the option strings --help itself shows (its usage line and the lines that start an
        # option's entry), not only what argparse stores
        invocations = [m.group(1) for m in re.finditer(r"^ {2}(-\S.*?)(?: {2,}|$)",
                                                        parser.format_help(), re.M)]
        shown = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)",
                               parser.format_usage() + "\n".join(invocations)))
        shown -= {"-h", "--help"}
        assert shown <= set(listed), (name, shown - set(listed))
        missing = [o for o in listed if o not in spans]
        assert not missing, f"docs/commands/{name}.md does not name {missing}"
    index = _page("commands/index.md")
    missing = [n for n in cmds if f"({n}.md)" not in index]
    assert not missing, f"docs/commands/index.md does not link {missing}"


# -- (c) every key of hwsim run --json ------------------------------------------------------
#: maps whose keys are data (memory level names, silicon components, layer names), not
#: contract keys: the page documents the map itself
_DATA_KEYED = {"energy.memory_j", "per_device[].memory_j", "silicon.area_breakdown_mm2",
               "sparsity.kept_dense"}
#: data-named keys inside a map of contract keys: the page writes them with a placeholder
_PLACEHOLDERS = [(re.compile(r"^energy_breakdown\.memory\..+_j$"),
                  "energy_breakdown.memory.<level>_j")]


def _key_paths(obj: Any, prefix: str = "") -> set[str]:
    """Every key of a JSON document by its full path (``by_kind[].share``)."""
    out: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            path = f"{prefix}{k}"
            path = next((name for rx, name in _PLACEHOLDERS if rx.match(path)), path)
            out.add(path)
            if path not in _DATA_KEYED:
                out |= _key_paths(v, path + ".")
    elif isinstance(obj, list):
        for item in obj:
            out |= _key_paths(item, prefix[:-1] + "[].")
    return out


def _run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    from simulator.cli import main

    assert main(["run", *argv, "--json", "--top", "1"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_contract_documents_every_run_key(capsys: pytest.CaptureFixture[str]) -> None:
    gpu = _run_json(capsys, "--workload", "gpt2", "--arch", "h100-sxm", "--phase", "decode",
                    "--batch", "2", "--context", "64", "--sparsity", "2:4")
    systolic = _run_json(capsys, "--workload", "resnet50", "--arch", "tpu-v1", "--dtype",
                         "int8", "--batch", "1")
    keys = _key_paths(gpu) | _key_paths(systolic)
    # the runs reach the parts of the contract that only some runs have
    assert {"sparsity", "silicon", "area_mm2", "ops[].start_s", "by_kind[].bound"} <= keys
    spans = _code_spans(_page("json-contract.md"))
    missing = sorted(keys - spans)
    assert not missing, f"docs/json-contract.md does not document {missing}"


# -- (d) every spec field the loader knows --------------------------------------------------
def _strings(node: ast.AST, module: Any, func: ast.FunctionDef | None,
             tree: ast.Module | None = None) -> set[str] | None:
    """The field names an ``allowed`` argument of ``_Checker.mapping`` holds. A parameter of
    the enclosing function is read from what every call of that function passes."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        out: set[str] = set()
        for e in node.elts:
            item = e.value if isinstance(e, ast.Starred) else e
            out |= _strings(item, module, func, tree) or set()
        return out
    if isinstance(node, ast.Dict):
        return {k.value for k in node.keys if isinstance(k, ast.Constant)}
    if isinstance(node, ast.Name):
        if hasattr(module, node.id):
            value = getattr(module, node.id)
            return set(value) if isinstance(value, (tuple, list, dict, set)) else None
        if func is not None:
            for stmt in ast.walk(func):
                if isinstance(stmt, ast.Assign) and any(
                        isinstance(t, ast.Name) and t.id == node.id for t in stmt.targets):
                    if isinstance(stmt.value, (ast.Dict, ast.Tuple, ast.List)):
                        return _strings(stmt.value, module, func, tree)
                    return set()  # e.g. schema = PARAM_SCHEMA.get(...): read below
            params = [a.arg for a in func.args.args]
            if node.id in params and tree is not None:
                return _passed(tree, func.name, params.index(node.id), node.id, module)
    raise AssertionError(f"cannot read the allowed fields {ast.dump(node)} in the loader; "
                         "teach tests/docs/test_docs_site.py::_strings this form")


def _passed(tree: ast.Module, name: str, index: int, keyword: str, module: Any) -> set[str]:
    """The fields every call of the loader's function ``name`` passes as its parameter at
    ``index`` (or by ``keyword``)."""
    out: set[str] = set()
    for caller in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
        for call in ast.walk(caller):
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) \
                    and call.func.id == name:
                args = [k.value for k in call.keywords if k.arg == keyword]
                args += call.args[index:index + 1]
                for arg in args:
                    out |= _strings(arg, module, caller, tree) or set()
    return out


def loader_fields() -> set[str]:
    """Every field name the arch-spec loader accepts, from its code: its ``*_FIELDS`` tables,
    ``PARAM_SCHEMA`` (every family's params) and the allowed fields of every
    ``c.mapping(raw, path, allowed, ...)`` call."""
    from simulator.arch import loader

    fields: set[str] = set()
    for name, value in vars(loader).items():
        if name.endswith("_FIELDS") and isinstance(value, tuple):
            fields |= set(value)
    for schema in loader.PARAM_SCHEMA.values():
        fields |= set(schema)
    tree = ast.parse(Path(loader.__file__).read_text(encoding="utf-8"))
    calls = 0
    for func in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
        for node in ast.walk(func):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "mapping" and len(node.args) >= 3):
                calls += 1
                fields |= _strings(node.args[2], loader, func, tree) or set()
    assert calls >= 10, calls  # the loader reads its sections through _Checker.mapping
    return fields


def test_loader_field_extraction_sees_every_kind_of_section() -> None:
    fields = loader_fields()
    # one field from each way the loader spells its allowed fields: a module table, an inline
    # tuple, a local dict, a starred tuple, an imported constant, a family's params
    assert {"host_link", "flops_per_cycle", "allreduce_bandwidth", "base", "ofmap",
            "sparse_nm", "nics_per_node", "uram288", "extra_idle", "special_multiplier"} <= fields


def test_spec_format_documents_every_loader_field() -> None:
    from simulator.arch import spec
    from simulator.units import KINDS

    spans = _code_spans(_page("spec-format.md"))
    missing = sorted(loader_fields() - spans)
    assert not missing, f"docs/spec-format.md does not document {missing}"
    enums = (set(spec.DEVICE_KINDS) | set(spec.FAMILIES) | set(spec.TOPOLOGIES)
             | set(spec.FABRIC_TOPOLOGIES) | set(spec.UNIT_KINDS)
             | set(spec.KIND_EFFICIENCY_KINDS) | {"system", "cluster"})
    missing = sorted(enums - spans)
    assert not missing, f"docs/spec-format.md does not name the values {missing}"
    unit_kinds = set(KINDS) - spans
    assert not unit_kinds, f"docs/spec-format.md does not explain the quantities {unit_kinds}"


def test_spec_format_documents_process_node_figures() -> None:
    from simulator.cost.process import process_data

    figures = {k for node in process_data()["nodes"].values() for k in node}
    missing = sorted(figures - _code_spans(_page("spec-format.md")))
    assert not missing, f"docs/spec-format.md does not document nodes.yaml's {missing}"
