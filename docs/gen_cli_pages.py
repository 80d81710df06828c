"""Generate the option tables of the command pages (docs/commands/<command>.md) from argparse.

Each command page holds hand-written prose and one block, between the two markers below, that
this script writes from :func:`simulator.cli.build_parser`: the usage line and a table of every
option (flags, value, default, help) grouped as ``--help`` groups them. It also writes the
"Commands" part of the nav in ``mkdocs.yml`` (between ``# BEGIN commands`` and
``# END commands``) and the table of docs/commands/index.md, so a new subcommand gets a
page, a nav entry and a row in one run.

    python docs/gen_cli_pages.py          # rewrite the blocks (and create missing pages)
    python docs/gen_cli_pages.py --check  # exit 1 if anything is out of date (what CI runs,
                                          # through tests/docs/test_docs_site.py)

A page that exists keeps its prose; only the block is replaced. A command without a page gets
one made of its argparse description and the block, for a person to extend.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
COMMANDS = DOCS / "commands"
MKDOCS_YML = ROOT / "mkdocs.yml"
BEGIN = "<!-- BEGIN GENERATED OPTIONS: python docs/gen_cli_pages.py; do not edit by hand -->"
END = "<!-- END GENERATED OPTIONS -->"
INDEX = COMMANDS / "index.md"
INDEX_BEGIN = "<!-- BEGIN GENERATED COMMANDS: python docs/gen_cli_pages.py -->"
INDEX_END = "<!-- END GENERATED COMMANDS -->"
NAV_BEGIN = "    # BEGIN commands (python docs/gen_cli_pages.py)"
NAV_END = "    # END commands"
#: width of the usage line (fixed, so the output does not depend on the terminal)
WIDTH = 88

if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))


def subcommands() -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """``hwsim``'s subcommands in ``--help`` order: name -> (parser, one-line help)."""
    from simulator.cli import build_parser

    ap = build_parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    return {name: (p, helps.get(name, "")) for name, p in sub.choices.items()}


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell: pipes escaped, one line."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _value(action: argparse.Action) -> str:
    """The value an option takes: its choices, else its metavar (a pipe inside a code span
    does not split a table cell)."""
    if action.nargs == 0:  # a flag (store_true / store_false / count)
        return ""
    if action.choices is not None:
        return ", ".join(f"`{c}`" for c in action.choices)
    if action.metavar is not None:
        return f"`{action.metavar}`"
    return f"`{action.dest.upper()}`"


def _default(action: argparse.Action) -> str:
    d = action.default
    if action.nargs == 0 or d is None or d is argparse.SUPPRESS:
        return ""
    return f"`{d}`"


def options(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string (and positional name) ``--help`` lists for ``parser``."""
    out = []
    for a in parser._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        out += list(a.option_strings) or [a.metavar or a.dest]
    return out


def _usage_item(a: argparse.Action) -> str:
    if not a.option_strings:
        return str(a.metavar or a.dest)
    value = ("" if a.nargs == 0 else
             " {" + ",".join(map(str, a.choices)) + "}" if a.choices is not None else
             f" {a.metavar or a.dest.upper()}")
    flag = f"{a.option_strings[-1]}{value}"
    return flag if a.required else f"[{flag}]"


def usage(parser: argparse.ArgumentParser) -> str:
    """The usage line, wrapped at :data:`WIDTH` by this module (not by argparse, whose
    wrapping differs between Python versions)."""
    acts = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    acts.sort(key=lambda a: not a.option_strings)  # positionals last, as argparse shows them
    items = [_usage_item(a).replace(" ", "\0") for a in acts]  # items never break
    head = f"usage: {parser.prog} "
    return textwrap.fill(" ".join(items), WIDTH, initial_indent=head,
                         subsequent_indent=" " * len(head), break_on_hyphens=False,
                         break_long_words=False).replace("\0", " ")


def block(name: str, parser: argparse.ArgumentParser) -> str:
    """The generated block of one command: usage and one table per argument group."""
    lines = [BEGIN, "", "```text", usage(parser), "```", ""]
    expand = argparse.HelpFormatter(prog=parser.prog, width=WIDTH)._expand_help
    for group in parser._action_groups:
        acts = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        if not acts:
            continue
        lines += [f"**{group.title}**", "", "| Option | Value | Default | Description |",
                  "|---|---|---|---|"]
        for a in acts:
            flags = ", ".join(f"`{s}`" for s in a.option_strings) or f"`{a.metavar or a.dest}`"
            text = expand(a) if a.help and a.help is not argparse.SUPPRESS else ""
            lines.append(f"| {flags} | {_value(a)} | {_default(a)} | {_cell(text)} |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def render_page(name: str, parser: argparse.ArgumentParser, help_line: str,
                current: str | None) -> str:
    """The page text: ``current`` with its block replaced, or a new page."""
    new_block = block(name, parser)
    if current is None:
        intro = parser.description or help_line
        return (f"# hwsim {name}\n\n{intro[:1].upper() + intro[1:]}.\n\n## Options\n\n"
                f"{new_block}\n").replace("..\n", ".\n")
    inner = new_block.removeprefix(BEGIN).removesuffix(END)
    return _between(current, BEGIN, END, inner, f"docs/commands/{name}.md")


def render_nav(names: list[str], current: str) -> str:
    """mkdocs.yml with its commands nav rewritten (one entry per subcommand)."""
    entries = "".join(f"\n    - hwsim {n}: commands/{n}.md" for n in names)
    return _between(current, NAV_BEGIN, NAV_END, entries + "\n", "mkdocs.yml")


def _between(text: str, begin: str, end: str, new: str, where: str) -> str:
    """``text`` with what lies between the ``begin`` and ``end`` markers replaced."""
    if text.count(begin) != 1 or text.count(end) != 1:
        raise SystemExit(f"{where}: expected one '{begin}' and one '{end}'")
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}{new}{end}{tail}"


def render_index(cmds: dict[str, tuple[argparse.ArgumentParser, str]], current: str) -> str:
    """docs/commands/index.md with its table of commands (name, one-line help) rewritten."""
    rows = "".join(f"| [`{n}`]({n}.md) | {_cell(h)} |\n" for n, (_, h) in cmds.items())
    table = f"\n| command | what it does |\n|---|---|\n{rows}"
    return _between(current, INDEX_BEGIN, INDEX_END, table, "docs/commands/index.md")


def expected() -> dict[Path, str]:
    """Every generated file with the text it should have."""
    out: dict[Path, str] = {}
    cmds = subcommands()
    for name, (parser, help_line) in cmds.items():
        path = COMMANDS / f"{name}.md"
        current = path.read_text(encoding="utf-8") if path.exists() else None
        out[path] = render_page(name, parser, help_line, current)
    out[MKDOCS_YML] = render_nav(list(cmds), MKDOCS_YML.read_text(encoding="utf-8"))
    out[INDEX] = render_index(cmds, INDEX.read_text(encoding="utf-8"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true",
                    help="only report files that are out of date (exit 1 if any)")
    a = ap.parse_args(argv)
    stale = []
    for path, text in expected().items():
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old == text:
            continue
        stale.append(path.relative_to(ROOT))
        if not a.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    verb = "out of date" if a.check else "written"
    for p in stale:
        print(f"{p}: {verb}")
    if a.check and stale:
        print("run: python docs/gen_cli_pages.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
