"""``comfyfixer``: the command line.

    comfyfixer scan WORKFLOW_OR_DIR... [--comfyui-root DIR] [--json]
    comfyfixer resolve WORKFLOW... [--comfyui-root DIR] [--json] [--backends civitai,huggingface]
    comfyfixer fix WORKFLOW... [--comfyui-root DIR] [--dry-run] [--yes] [--min-confidence 0.9] [--json]
                   [--include-optional] [--output-dir DIR] [--backends ...]
    comfyfixer annotate WORKFLOW -o OUT.json [--comfyui-root DIR]
    comfyfixer script WORKFLOW... [--shell bash|powershell] [-o FILE]
    python -m comfyfixersmart ...      (the same)

Exit codes: 0 nothing required is missing (or everything was fixed), 1 something required
is missing (or could not be fixed), 2 an error (bad arguments, unreadable input, settings),
130 interrupted.

Everything printed passes through ``security.redact_text`` (URLs through ``redact_url``),
and names that come from workflows or servers are printed as plain text, never as rich
markup (a file called ``x [red].safetensors`` must not restyle the table).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any, Dict, List, Optional, Sequence

from . import __version__
from .datamodel import AUTO_CHOICE_FLOOR
from .errors import ComfyFixerError, ValidationError
from .security import redact_text, redact_url
from .settings import Config

EXIT_OK, EXIT_MISSING, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130

_STATUS_STYLE = {"present": "green", "elsewhere": "yellow", "missing": "red", "unchecked": "dim"}
_BACKENDS_HELP = "comma-separated: workflow,civitai,huggingface (default: all)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="comfyfixer",
        description="Find, download and verify the models a ComfyUI workflow needs.",
        epilog="exit codes: 0 nothing required missing, 1 something missing or not fixed, 2 error",
    )
    parser.add_argument("--version", action="version", version=f"comfyfixer {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML config file (default: user config dir)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
        p.add_argument("--comfyui-root", metavar="DIR",
                       help="ComfyUI folder (holds models/ and extra_model_paths.yaml)")
        if json_flag:
            p.add_argument("--json", action="store_true", help="print a machine-readable JSON report")

    p = sub.add_parser("scan", help="list the models workflows need and which are on disk")
    p.add_argument("paths", nargs="+", metavar="WORKFLOW_OR_DIR")
    common(p)

    p = sub.add_parser("resolve", help="find candidates for every missing model")
    p.add_argument("paths", nargs="+", metavar="WORKFLOW")
    common(p)
    p.add_argument("--backends", help=_BACKENDS_HELP)

    p = sub.add_parser("fix", help="download every missing model that is found with confidence")
    p.add_argument("paths", nargs="*", metavar="WORKFLOW")
    p.add_argument("--retry-failed", action="store_true",
                   help="download again the files whose last download failed (from the state database)")
    common(p)
    p.add_argument("--backends", help=_BACKENDS_HELP)
    p.add_argument("--dry-run", action="store_true", help="print the plan, download nothing")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask before downloading")
    p.add_argument("--min-confidence", type=float, default=None, metavar="X",
                   help="least confidence to download a candidate automatically (default 0.9, never below 0.8)")
    p.add_argument("--include-optional", action="store_true", help="also fetch models of muted/bypassed nodes")
    p.add_argument("--output-dir", metavar="DIR", help="models root to download into instead of the ComfyUI folders")
    p.add_argument("--allow-pickle", action="append", default=[], metavar="NAME",
                   help="download this pickle-format file (.ckpt/.pt/.pth/.bin) named by the workflow; repeatable")
    p.add_argument("--pick", action="append", default=[], metavar="NAME=N",
                   help="download candidate N (as `resolve` lists them) for the missing model NAME; repeatable")
    p.add_argument("--url", action="append", default=[], metavar="NAME=URL",
                   help="download the missing model NAME from this link (a Hugging Face or Civitai page or "
                        "file link); repeatable")
    p.add_argument("--allow-pickle-all", action="store_true",
                   help="download every pickle-format file without asking (they can run code when loaded)")

    p = sub.add_parser("relink", help="make files found in another folder loadable where the nodes look "
                                       "(no download)")
    p.add_argument("path", metavar="WORKFLOW")
    common(p)
    p.add_argument("--mode", choices=("link", "move", "symlink"), default="link",
                   help="link: hard link, else a verified copy (default); move: link or copy, then remove "
                        "the old name; symlink: a symbolic link")

    p = sub.add_parser("annotate", help="write the resolved sources into a workflow (properties.models)")
    p.add_argument("path", metavar="WORKFLOW")
    p.add_argument("-o", "--output", required=True, metavar="OUT.json")
    common(p, json_flag=False)
    p.add_argument("--backends", help=_BACKENDS_HELP)
    p.add_argument("--min-confidence", type=float, default=None, metavar="X")

    p = sub.add_parser("script", help="write a bash or PowerShell script that downloads the missing models")
    p.add_argument("paths", nargs="+", metavar="WORKFLOW")
    common(p, json_flag=False)
    p.add_argument("--shell", choices=("bash", "powershell"), default="bash")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    p.add_argument("--backends", help=_BACKENDS_HELP)
    p.add_argument("--min-confidence", type=float, default=None, metavar="X")
    return parser


class _RedactingStream:
    """A text stream that scrubs secrets from whatever is written (the last line of defence:
    messages are redacted where they are made)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact_text(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, flush, encoding ...
        return getattr(self._stream, name)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``comfyfixer`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    undo_logging = _setup_logging(args.verbose)
    try:
        code = _main(args)
    finally:
        undo_logging()
    if code == EXIT_INTERRUPTED and argv is None:  # run as the program, not called in-process
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """End the process at once after Ctrl-C.  A hub lookup blocked in a socket read (a hub that
    accepts and never answers) runs on a pool thread that the interpreter joins on its way out
    (``concurrent.futures``): the exit would wait up to the read timeout, after "interrupted"
    was printed.  Output and logs are flushed first; partial downloads are kept as they are."""
    import logging
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(code)


def _main(args: argparse.Namespace) -> int:
    """Run the parsed command; turn our exceptions into messages and exit codes."""
    from rich.console import Console

    stdout, stderr = _RedactingStream(sys.stdout), _RedactingStream(sys.stderr)
    out = Console(file=stdout, highlight=False, soft_wrap=False)
    err = Console(file=stderr, highlight=False, soft_wrap=False)
    try:
        config = Config.load(
            config_file=args.config,
            comfyui_root=getattr(args, "comfyui_root", None),
            min_confidence=getattr(args, "min_confidence", None),
        )
        handler = {"scan": _scan, "resolve": _resolve, "fix": _fix, "annotate": _annotate, "script": _script,
                   "relink": _relink}
        undo_file_log = _log_to_file(config) if args.command == "fix" else (lambda: None)
        try:
            return handler[args.command](args, config, out, err, stdout)
        finally:
            undo_file_log()
    except ComfyFixerError as exc:
        _print_error(err, exc)
        if getattr(args, "json", False):
            from .report import REPORT_VERSION, error_json

            stdout.write(json.dumps({"report_version": REPORT_VERSION, "error": error_json(exc)}, indent=2) + "\n")
        return EXIT_ERROR
    except OSError as exc:  # e.g. -o into a folder that does not exist
        _print_error(err, exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]: running downloads were stopped; their partial files are kept "
                  "and the next run resumes them")
        return EXIT_INTERRUPTED


# -- commands -------------------------------------------------------------------------------

def _core(config: Config):
    from .core import ComfyFixerCore

    return ComfyFixerCore(config)


def _scan(args, config, out, err, stdout) -> int:
    from .report import scan_to_json, summarize

    with _core(config) as core:
        workflows, errors = core.scan_paths(args.paths)
        for wf in workflows:
            core.check(wf.model_references)
    refs = [r for wf in workflows for r in wf.model_references]
    if args.json:
        _dump(stdout, scan_to_json(workflows, errors, config.comfyui_root))
    else:
        for wf in workflows:
            _print_references(out, wf)
        if len(workflows) > 1:
            out.print(_summary_text(f"{len(workflows)} workflows", summarize(refs)))
        if not config.comfyui_root and workflows:
            err.print("[dim]no --comfyui-root given: nothing was checked against the disk[/]")
    _print_read_errors(err, errors)
    if _fatal(errors) or not workflows:
        return EXIT_ERROR
    return EXIT_MISSING if summarize(refs)["missing"] else EXIT_OK


def _fatal(errors) -> bool:
    """Errors that decide the exit code: files named on the command line, not the non-workflow
    files met while walking a folder."""
    return any(not e.get("skipped") for e in errors)


def _resolve(args, config, out, err, stdout) -> int:
    from .report import analysis_to_json, summarize

    with _core(config) as core:
        analysis = core.analyze_workflows(args.paths, backends=_backends(args))
        threshold = core.threshold()
    if args.json:
        _dump(stdout, analysis_to_json(analysis, threshold))
    else:
        _print_resolutions(out, analysis, threshold)
    _print_read_errors(err, analysis.errors)
    if _fatal(analysis.errors) or not analysis.workflows:
        return EXIT_ERROR
    return EXIT_MISSING if summarize(analysis.references)["missing"] else EXIT_OK


def _fix(args, config, out, err, stdout) -> int:
    from .report import run_to_json

    if not args.paths and not args.retry_failed:
        err.print("[red]error:[/] name at least one WORKFLOW, or pass --retry-failed")
        return EXIT_ERROR
    if args.retry_failed:  # the files were chosen by an earlier run: no question
        with _core(config) as core, _ProgressRenderer(out, quiet=args.json) as progress:
            run = core.retry_failed(on_event=progress.on_event, dry_run=args.dry_run)
        if args.json:
            _dump(stdout, run_to_json(run))
        else:
            if not run.plan:
                out.print("no failed download to retry")
            _print_outcome(out, run)
        return EXIT_MISSING if run.failures or (run.dry_run and run.plan) else EXIT_OK
    interactive = not args.json and sys.stdin.isatty()
    if not args.dry_run and not args.yes and not interactive:
        # decided before any work: a script must not sit on a prompt nobody sees
        message = "not asking on a non-interactive run: pass --yes to download, or --dry-run to see the plan"
        err.print(f"[red]error:[/] {message}")
        if args.json:
            from .report import REPORT_VERSION

            _dump(stdout, {"report_version": REPORT_VERSION, "error": {"type": "UsageError", "message": message}})
        return EXIT_ERROR
    _warn_floor(err, args.min_confidence)
    from .choices import parse_assignments

    picks: Dict[str, int] = {}
    for name, number in parse_assignments(args.pick, "--pick", last=True).items():
        if not number.isdigit():
            raise ValidationError(f"--pick {name}={number}: N must be a candidate number (1, 2, ...)")
        picks[name] = int(number)
    shown: List[bool] = []

    def confirm(run) -> bool:
        shown.append(True)
        if not args.json:
            _print_plan(out, run)
        if args.yes:
            return True
        from rich.prompt import Confirm

        return Confirm.ask(f"Download {len(run.plan)} file(s)?", console=out, default=True)

    with _core(config) as core, _ProgressRenderer(out, quiet=args.json) as progress:
        run = core.run(args.paths, args.output_dir, _backends(args), dry_run=args.dry_run,
                       min_confidence=config.min_confidence, include_optional=args.include_optional,
                       on_event=progress.on_event, confirm=confirm,
                       allow_pickle=_pickle_consent(args, out, interactive and not args.dry_run),
                       picks=picks, urls=parse_assignments(args.url, "--url", last=False),
                       choose=_ask_candidate(out) if interactive and not args.yes else None)
    if args.json:
        _dump(stdout, run_to_json(run))
    else:
        if not shown:
            _print_plan(out, run)
        _print_outcome(out, run)
    if any(f.error_type == "WorkflowParseError" for f in run.failures):
        return EXIT_ERROR
    if run.dry_run or (run.plan and not run.downloads):  # planned or declined: still missing
        return EXIT_MISSING if run.plan or run.failures else EXIT_OK
    return EXIT_MISSING if run.failures else EXIT_OK


def _ask_candidate(out):
    """On a terminal: show an unsure reference's candidates and ask for a number or a link."""

    def ask(res):
        from rich.prompt import Prompt

        ref = res.reference
        out.print(f"\n[yellow]not sure[/] {_esc(ref.key)}  [dim]{_esc(_node_label(ref))}[/]")
        for i, c in enumerate(res.candidates[:9], 1):
            flag = " [yellow](pickle)[/]" if c.metadata.get("pickle") else ""
            out.print(f"  {i}. {c.confidence:.0%} {_esc(c.backend)}: {_esc(c.filename)}{flag} "
                      f"[dim]{_esc(c.reason)}[/]")
        if not res.candidates:
            out.print("  [dim]no candidate found[/]")
        try:
            answer = Prompt.ask("number, a link to paste, or Enter to skip", console=out, default="",
                                show_default=False).strip()
        except EOFError:  # input closed: nobody to ask
            return None
        if not answer:
            return None
        if answer.isdigit() and 1 <= int(answer) <= min(9, len(res.candidates)):
            return int(answer)
        if "/" in answer or "." in answer:
            return answer
        out.print("[dim]skipped[/]")
        return None

    return ask


def _pickle_consent(args, out, interactive: bool):
    """``allow_pickle`` for the core: all, the names given, or (on a terminal) a question per file."""
    if args.allow_pickle_all:
        return True
    given = {n.strip() for n in args.allow_pickle if n.strip()}
    if not interactive:
        return given
    from .pickles import consent

    named = consent(given)

    def ask(spec) -> bool:
        if named(spec):
            return True
        from rich.prompt import Confirm

        out.print(f"[yellow]warning:[/] {_esc(spec.get('filename'))} from {_esc(spec.get('source'))} is a pickle "
                  "format: loading it can run code on this computer.")
        return Confirm.ask(f"Download {_esc(spec.get('filename'))} anyway?", console=out, default=False)

    return ask


def _relink(args, config, out, err, stdout) -> int:
    from .datamodel import ELSEWHERE
    from .relink import relink_references

    with _core(config) as core:
        analysis = core.analyze_workflows([args.path], resolve=False)
        elsewhere = [r for r in analysis.references if r.status == ELSEWHERE]
        inventory = core.inventory
        outcome = relink_references(elsewhere, inventory.folders, args.mode, hasher=inventory.sha256,
                                    protected=core.protected_roots())
    _print_read_errors(err, analysis.errors)
    if args.json:
        from .report import REPORT_VERSION

        _dump(stdout, {"report_version": REPORT_VERSION, "relinked": outcome})
    else:
        if not outcome:
            out.print("nothing to relink: no file of this workflow is in another folder")
        for row in outcome:
            if "result" in row:
                res = row["result"]
                out.print(f"[green]{_esc(res['mode'])}[/] {_esc(row['key'])} <- {_esc(_display_path(res['source']))}"
                          f"  sha256 {_esc(res['sha256'][:12])}")
            else:
                out.print(f"[red]not relinked[/] {_esc(row['key'])}: {_esc(row['error']['message'])}")
    if _fatal(analysis.errors) or not analysis.workflows:
        return EXIT_ERROR
    return EXIT_MISSING if any("error" in row for row in outcome) else EXIT_OK


def _annotate(args, config, out, err, stdout) -> int:
    from .annotate import annotate_workflow_with_count
    from .fileutils import save_json_file
    from .scan import load_workflow
    from .sources import workflow_sources

    _warn_floor(err, args.min_confidence)
    with _core(config) as core:
        analysis = core.analyze_workflows([args.path], backends=_backends(args))
        if analysis.errors:
            _print_read_errors(err, analysis.errors)
            return EXIT_ERROR
        document = load_workflow(args.path, max_bytes=config.max_workflow_bytes)
        # present files too: found by their sha256 (index, Civitai, Hugging Face)
        report = workflow_sources(analysis, core, core.threshold(), backends=_backends(args))
        annotated, count = annotate_workflow_with_count(document, report.sources, config=config)
    save_json_file(annotated, args.output)
    out.print(f"wrote {_esc(args.output)}: sources embedded for {count} model reference(s)")
    for key in report.unsourced:
        err.print(f"[yellow]no sure source[/] for {_esc(key)}: left without one")
    return EXIT_OK


def _script(args, config, out, err, stdout) -> int:
    _warn_floor(err, args.min_confidence)
    with _core(config) as core:
        analysis = core.analyze_workflows(args.paths, backends=_backends(args))
        specs, failures = core.plan(analysis, config.min_confidence)
        text = core.downloader.generate_script(specs, shell=args.shell)
    _print_read_errors(err, analysis.errors)
    if args.output:
        from .fileutils import atomic_write_bytes

        atomic_write_bytes(args.output, text.encode("utf-8"))
        if args.shell == "bash":
            import os

            os.chmod(args.output, 0o755)  # a script is meant to be run
        out.print(f"wrote {_esc(args.output)}: {len(specs)} download(s)")
    else:
        stdout.write(text)
    for f in failures:
        err.print(f"[yellow]not in the script[/] {_esc(f.directory)}/{_esc(f.filename)}: {_esc(f.reason)}")
    if _fatal(analysis.errors):
        return EXIT_ERROR
    return EXIT_MISSING if failures else EXIT_OK


# -- rendering -----------------------------------------------------------------------------

def _esc(value: Any) -> str:
    """Untrusted text as rich markup that prints literally: secrets removed, and no escape
    sequence, control or bidi character (a workflow's strings must not drive the terminal)."""
    from rich.markup import escape

    from .textsafe import strip_controls

    return escape(strip_controls(redact_text(str(value))))


def _dump(stdout, data: Dict[str, Any]) -> None:
    from .textsafe import escape_json_controls

    stdout.write(escape_json_controls(json.dumps(data, indent=2, ensure_ascii=False)) + "\n")


def _print_error(err, exc: BaseException) -> None:
    err.print(f"[bold red]error:[/] {type(exc).__name__}: {_esc(exc)}")


def _print_read_errors(err, errors: List[Dict[str, Any]]) -> None:
    for e in errors:
        if e.get("skipped"):
            err.print(f"[yellow]skipped[/] {_esc(e['path'])}: not a workflow ({_esc(e['error'])})")
        else:
            err.print(f"[red]cannot read[/] {_esc(e['path'])}: {_esc(e['error'])}")


def _warn_floor(err, value: Optional[float]) -> None:
    if value is not None and value < AUTO_CHOICE_FLOOR:
        err.print(f"[yellow]note:[/] --min-confidence {value:g} is below the floor: "
                  f"candidates under {AUTO_CHOICE_FLOOR:.0%} are never downloaded automatically")


def _summary_text(label: str, s: Dict[str, int]) -> str:
    if s["total"] and not (s["present"] or s["elsewhere"] or s["missing"] or s["optional_missing"]):
        return f"{label}: {s['total']} model reference(s), [dim]not checked against the disk[/]"
    text = (f"{label}: {s['total']} model reference(s), [green]{s['present']} present[/] · "
            f"[yellow]{s['elsewhere']} elsewhere[/] · [red]{s['missing']} missing[/]")
    if s["optional_missing"]:
        text += f" · [dim]{s['optional_missing']} optional missing[/]"
    return text


def _clean(text: Any) -> str:
    """Plain text as it will be shown (secrets and terminal controls removed)."""
    from .textsafe import strip_controls

    return strip_controls(redact_text(str(text)))


def _cells(text: str) -> int:
    from rich.cells import cell_len

    return cell_len(text)


def _fit_middle(text: str, width: int) -> str:
    """``text`` if it fits ``width`` terminal cells, else its start, ``…`` and its end (the
    end, which holds the extension and the distinctive part of a file name, gets more)."""
    width = max(width, 5)
    if _cells(text) <= width:
        return text
    keep = width - 1
    head_n = keep // 3
    head, tail = text[:head_n], text[-(keep - head_n):]
    while _cells(head) + 1 + _cells(tail) > width and tail:  # wide characters take two cells
        tail = tail[1:]
    return f"{head}…{tail}"


def _node_label(ref) -> str:
    label = f"{ref.node_type} #{ref.node_id}" if ref.node_id is not None else ref.node_type
    if ref.subgraph_path:
        label += " in subgraph " + ">".join(str(p) for p in ref.subgraph_path)
    if len(ref.locations) > 1:
        label += f" (+{len(ref.locations) - 1})"
    return label


def _print_references(out, wf) -> None:
    from rich import box
    from rich.table import Table

    from .report import summarize

    refs = wf.model_references
    out.print(_summary_text(f"{_esc(wf.path or wf.workflow_id)} [dim]({wf.format})[/]", summarize(refs)))
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    rows = []
    for ref in refs:
        status = ref.status or "unchecked"
        rows.append((status, status + (" (optional)" if ref.optional else ""), ref))
    # file names stay whole on one line: the node column folds instead, and a name longer
    # than the room left is cut in the middle (its start and its extension stay readable)
    status_w = max([len(label) for _, label, _ in rows] + [6])
    folder_w = max([_cells(_clean(r.expected_directory)) for _, _, r in rows] + [6])
    names = [_cells(_clean(r.filename)) for _, _, r in rows] + [_cells(_clean(r.found_path)) for _, _, r in rows
                                                                 if r.found_path]
    node_w = max([_cells(_clean(_node_label(r))) for _, _, r in rows] + [4])
    need = max(names + [16])
    # 11 / 8: the table's edges and the gaps between its 4 / 3 columns (SIMPLE_HEAD, pad_edge off)
    free = out.width - status_w - folder_w - 11
    # too narrow for a node column beside whole names: the node goes under the file name
    node_column = free - min(node_w, 12) >= need
    if node_column:
        if free - node_w < need:
            node_w = max(12, free - need)  # the node label folds first
        room = max(16, free - node_w)
    else:
        room = max(16, out.width - status_w - folder_w - 8)
    urls = [_cells(_clean(redact_url(r.url) or "")) for _, _, r in rows if r.url]
    file_w = min(room, max([*names, 21, *urls] + ([] if node_column else
                                                   [_cells(_clean(_node_label(r))) for _, _, r in rows])))
    table.add_column("status", no_wrap=True, width=status_w)
    table.add_column("folder", no_wrap=True, width=folder_w)
    table.add_column("file [dim](url / found at)[/]" if node_column else "file [dim](url / found at / node)[/]",
                     no_wrap=True, overflow="ellipsis", width=file_w)
    if node_column:
        table.add_column("node", overflow="fold", width=node_w)
    room = file_w
    for status, label, ref in rows:
        style = _STATUS_STYLE.get(status, "")
        cell = _esc(_fit_middle(_clean(ref.filename), room))
        if ref.found_path:
            found = _clean(ref.found_path)
            sep = " " if _cells(found) + 9 <= room else ":\n"  # the path on a line of its own when needed
            cell += f"\n[yellow dim]found at{sep}{_esc(_fit_middle(found, room))}[/]"
        elif ref.url:
            cell += f"\n[dim]{_esc(_fit_middle(_clean(redact_url(ref.url) or ''), room))}[/]"
        node = _esc(_node_label(ref))
        # a folder guessed for a node no loader table knows says so (the reason is in --json)
        folder = _esc(ref.expected_directory) + ("\n[dim](guessed)[/]" if ref.folder_reason else "")
        if node_column:
            table.add_row(f"[{style}]{label}[/]", folder, cell, node)
        else:
            table.add_row(f"[{style}]{label}[/]", folder,
                          cell + f"\n[dim]{_esc(_fit_middle(_clean(_node_label(ref)), room))}[/]")
    if not wf.model_references:
        table.add_row("[dim]-[/]", "", "[dim]no model files referenced[/]", *([""] if node_column else []))
    out.print(table)
    for warning in wf.warnings[:5]:
        out.print(f"  [yellow]warning:[/] {_esc(warning)}")
    for pack in getattr(wf, "missing_packs", []):
        out.print(f"  [yellow]needs pack:[/] {_esc(_clean(pack.message))}")
    ignored = getattr(wf, "informational_references", [])
    if ignored:
        names = ", ".join(_clean(f"<lora:{r.filename}>") for r in ignored[:5]) + (" ..." if len(ignored) > 5 else "")
        out.print(f"  [dim]note: {_esc(names)} in text that no node applies (informational, not needed)[/]")


def _print_resolutions(out, analysis, threshold: float) -> None:
    from rich import box
    from rich.table import Table

    from .pickles import is_pickle_name

    if not analysis.resolutions:
        out.print("[green]nothing is missing[/]" if analysis.workflows else "[dim]no workflow read[/]")
        return
    sure = 0
    for res in analysis.resolutions:
        ref = res.reference
        status = "missing" if ref.status else "unchecked"
        title = (f"[{_STATUS_STYLE[status]}]{status}[/] {_esc(ref.key)}  [dim]{_esc(_node_label(ref))}"
                 + (", optional" if ref.optional else "") + "[/]")
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("", no_wrap=True)
        table.add_column("conf.", no_wrap=True, justify="right")
        table.add_column("backend", no_wrap=True)
        table.add_column("file", overflow="fold")
        table.add_column("size", no_wrap=True, justify="right")
        table.add_column("reason / source", overflow="fold")
        chosen = res.choose(threshold)
        sure += chosen is not None
        for i, c in enumerate(res.candidates[:5]):
            mark = "→" if c is chosen else str(i + 1)
            if c.metadata.get("pickle") or is_pickle_name(c.filename):
                mark += "!"  # a pickle format: never downloaded without a yes for this file
            style = "green" if c.confidence >= threshold else "yellow" if c.confidence >= AUTO_CHOICE_FLOOR else "dim"
            where = c.metadata.get("page_url") or c.download_url
            table.add_row(mark, f"[{style}]{c.confidence:.0%}[/]", _esc(c.backend), _esc(c.filename),
                          _size(c.size_bytes), f"{_esc(c.reason)}\n[dim]{_esc(redact_url(where))}[/]")
        if len(res.candidates) > 5:
            table.add_row("", "", "", f"[dim]... {len(res.candidates) - 5} more[/]", "", "")
        if not res.candidates:
            table.add_row("", "", "", "[dim]no candidate found[/]", "", "")
        out.print(table)
        for e in res.errors:
            out.print(f"  [yellow]{_esc(e.get('backend', '?'))}: {_esc(e.get('type'))}[/]: {_esc(e.get('message'))}")
    total = len(analysis.resolutions)
    out.print(f"{total} to find: [green]{sure} sure enough to download[/] (≥ {threshold:.0%}, marked →), "
              f"{total - sure} to pick by hand or not found")
    if any(c.metadata.get("pickle") or is_pickle_name(c.filename) for r in analysis.resolutions for c in r.candidates):
        out.print("[yellow]![/] a pickle format (.ckpt/.pt/.pth/.bin) can run code when loaded: `fix` asks for "
                  "each one (or takes --allow-pickle NAME)")


def _print_plan(out, run) -> None:
    from rich import box
    from rich.table import Table

    out.print(f"{run.workflows_scanned} workflow(s): {run.models_found} model(s), "
              f"{run.models_present} on disk, {run.models_missing} missing")
    if run.plan:
        table = Table(title="download plan" + (" (dry run)" if run.dry_run else ""), title_justify="left",
                      box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("folder", no_wrap=True)
        table.add_column("file", overflow="fold")
        table.add_column("from", no_wrap=True)
        table.add_column("conf.", no_wrap=True, justify="right")
        table.add_column("size", no_wrap=True, justify="right")
        table.add_column("sha256", no_wrap=True)
        table.add_column("why", overflow="fold")
        for spec in run.plan:
            table.add_row(_esc(spec["directory"]), _esc(spec["filename"]), _esc(spec["source"]),
                          f"{spec['confidence']:.0%}", _size(spec.get("size")),
                          "[green]known[/]" if spec.get("sha256") else "[dim]unknown[/]",
                          _esc(spec.get("reason", "")))
        out.print(table)
        for spec in run.plan:
            for warning in spec.get("warnings") or ():
                out.print(f"  [yellow]warning:[/] {_esc(spec['filename'])}: {_esc(warning)}")
    for f in run.skipped:
        out.print(f"[dim]left alone[/] {_esc(f.directory)}/{_esc(f.filename)}: {_esc(f.reason)}")
    for f in run.failures:
        where = f"{_esc(f.directory)}/{_esc(f.filename)}" if f.directory else _esc(f.filename)
        out.print(f"[yellow]not downloaded[/] {where}: {_esc(f.reason)}")


def _print_outcome(out, run) -> None:
    if run.dry_run:
        out.print("[dim]dry run: nothing downloaded[/]")
        return
    if run.plan and not run.downloads:
        out.print("[dim]nothing downloaded[/]")
        return
    for d in run.downloads:
        if d.success:
            how = "already there, sha256 verified" if d.skipped and d.verified else \
                "sha256 verified" if d.verified else "no hash known to verify"
            out.print(f"[green]✓[/] {_esc(_display_path(d.save_path))} [dim]({how})[/]")
        else:
            out.print(f"[red]✗[/] {_esc(d.filename)}: {_esc(d.error_type)}: {_esc(d.error_message)}")
        for w in d.warnings:
            out.print(f"  [yellow]warning:[/] {_esc(w)}")
    style = "green" if not run.failures else "yellow"
    optional = sum(1 for s in run.skipped if s.error_type == "optional")
    wanted = run.models_missing - optional
    note = f", {optional} optional left alone" if optional else ""
    out.print(f"[{style}]fixed {run.models_resolved} of {wanted} missing model(s)[/]{note} in {run.duration:.1f}s")


class _ProgressRenderer:
    """Draws download ProgressEvents as rich progress bars (started on the first event).

    Events come from the download threads: one lock keeps the bars consistent."""

    def __init__(self, console, *, quiet: bool):
        self.console, self.quiet = console, quiet
        self.progress = None
        self.tasks: Dict[str, Any] = {}
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> "_ProgressRenderer":
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._closed = True  # a late event from a download thread must not restart the display
            if self.progress is not None:
                self.progress.stop()
                self.progress = None

    def on_event(self, event) -> None:
        if self.quiet:
            return
        with self._lock:
            if self._closed:
                return
            if self.progress is None:
                from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                           TransferSpeedColumn)

                self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                         TransferSpeedColumn(), TimeRemainingColumn(), console=self.console)
                self.progress.start()
            key = event.item_id or event.filename
            if key not in self.tasks:
                self.tasks[key] = self.progress.add_task(_esc(event.filename), total=event.total)
            self.progress.update(self.tasks[key], completed=event.downloaded, total=event.total,
                                 description=f"{_esc(event.filename)} [dim]{_esc(event.state)}[/]")


def _display_path(path: str) -> str:
    """``path`` relative to the current folder when it is inside it (shorter, same meaning)."""
    import os

    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return rel if not rel.startswith("..") else path


def _backends(args) -> Optional[List[str]]:
    raw = getattr(args, "backends", None)
    return [b.strip() for b in raw.split(",") if b.strip()] if raw else None


def _size(n: Optional[int]) -> str:
    if not n:
        return "?"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return "?"


class _TerminalSafeFilter:
    """Log records reach the terminal without escape sequences or control characters."""

    def filter(self, record) -> bool:
        from .textsafe import strip_controls

        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let logging report it as usual
            return True
        record.msg, record.args = strip_controls(message), None
        return True


def _setup_logging(verbosity: int):
    """With ``-v``/``-vv``: our log records on stderr through rich.  Returns the undo (main()
    may run several times in one process: tests, embedding applications)."""
    import logging

    from .logs import get_logger

    if verbosity <= 0:
        return lambda: None
    from rich.console import Console
    from rich.logging import RichHandler

    logger = get_logger()
    level = logger.level
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
    # on stderr: standard output carries the tables and the --json reports
    handler = RichHandler(console=Console(stderr=True), show_path=False)
    handler.addFilter(_TerminalSafeFilter())
    logger.addHandler(handler)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)

    return undo


def _log_to_file(config: Config):
    """``fix`` keeps a rotating log of what it downloaded and why in ``config.log_dir``
    (``comfyfixer.log``, 1 MB x 3, secrets redacted like every record of ours).  Returns the undo."""
    import logging
    from logging.handlers import RotatingFileHandler

    from .fileutils import ensure_directory
    from .logs import get_logger

    try:
        path = ensure_directory(config.log_dir) / "comfyfixer.log"
        handler = RotatingFileHandler(path, maxBytes=1 << 20, backupCount=3, encoding="utf-8")
    except OSError:
        return lambda: None  # a read-only home must not stop a fix
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = get_logger()
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)

    def undo() -> None:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(level)

    return undo


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
