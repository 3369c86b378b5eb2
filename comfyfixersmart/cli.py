"""``comfyfixer``: the command line.

    comfyfixer scan WORKFLOW_OR_DIR... [--comfyui-root DIR] [--json]
    comfyfixer resolve WORKFLOW... [--comfyui-root DIR] [--json] [--backends civitai,huggingface]
    comfyfixer fix WORKFLOW... [--comfyui-root DIR] [--dry-run] [--yes] [--min-confidence 0.9] [--json]
    comfyfixer annotate WORKFLOW -o OUT.json [--comfyui-root DIR]
    comfyfixer script WORKFLOW... [--shell bash|powershell] [-o FILE]

Exit codes: 0 nothing required is missing (or everything was fixed), 1 something required
is missing (or could not be fixed), 2 an error (bad arguments, unreadable input, settings).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import __version__
from .errors import ComfyFixerError
from .settings import Config

EXIT_OK, EXIT_MISSING, EXIT_ERROR = 0, 1, 2

_STATUS_STYLE = {"present": "green", "elsewhere": "yellow", "missing": "red", "unchecked": "dim"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="comfyfixer",
        description="Find, download and verify the models a ComfyUI workflow needs.",
    )
    parser.add_argument("--version", action="version", version=f"comfyfixer {__version__}")
    parser.add_argument("--config", metavar="FILE", help="TOML config file (default: user config dir)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
        p.add_argument("--comfyui-root", metavar="DIR", help="ComfyUI folder (holds models/ and extra_model_paths.yaml)")
        if json_flag:
            p.add_argument("--json", action="store_true", help="print a machine-readable JSON report")

    p = sub.add_parser("scan", help="list the models workflows need and which are on disk")
    p.add_argument("paths", nargs="+", metavar="WORKFLOW_OR_DIR")
    common(p)

    p = sub.add_parser("resolve", help="find candidates for every missing model")
    p.add_argument("paths", nargs="+", metavar="WORKFLOW")
    common(p)
    p.add_argument("--backends", help="comma-separated: workflow,civitai,huggingface (default: all)")

    p = sub.add_parser("fix", help="download every missing model that is found with confidence")
    p.add_argument("paths", nargs="+", metavar="WORKFLOW")
    common(p)
    p.add_argument("--backends", help="comma-separated: workflow,civitai,huggingface (default: all)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, download nothing")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask before downloading")
    p.add_argument("--min-confidence", type=float, default=None, metavar="X",
                   help="least confidence to download a candidate automatically (default 0.9, never below 0.8)")
    p.add_argument("--include-optional", action="store_true", help="also fetch models of muted/bypassed nodes")
    p.add_argument("--output-dir", metavar="DIR", help="models root to download into instead of the ComfyUI folders")

    p = sub.add_parser("annotate", help="write the resolved sources into a workflow (properties.models)")
    p.add_argument("path", metavar="WORKFLOW")
    p.add_argument("-o", "--output", required=True, metavar="OUT.json")
    common(p, json_flag=False)
    p.add_argument("--backends", help="comma-separated: workflow,civitai,huggingface (default: all)")
    p.add_argument("--min-confidence", type=float, default=None, metavar="X")

    p = sub.add_parser("script", help="write a bash or PowerShell script that downloads the missing models")
    p.add_argument("paths", nargs="+", metavar="WORKFLOW")
    common(p, json_flag=False)
    p.add_argument("--shell", choices=("bash", "powershell"), default="bash")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    p.add_argument("--backends", help="comma-separated: workflow,civitai,huggingface (default: all)")
    p.add_argument("--min-confidence", type=float, default=None, metavar="X")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``comfyfixer`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    from rich.console import Console

    out = Console(highlight=False, soft_wrap=False)
    err = Console(stderr=True, highlight=False)
    try:
        config = Config.load(
            config_file=args.config,
            comfyui_root=getattr(args, "comfyui_root", None),
            min_confidence=getattr(args, "min_confidence", None),
        )
        handler = {"scan": _scan, "resolve": _resolve, "fix": _fix, "annotate": _annotate, "script": _script}
        return handler[args.command](args, config, out, err)
    except ComfyFixerError as exc:
        err.print(f"[bold red]error:[/] {type(exc).__name__}: {exc}", markup=True, highlight=False)
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.print("[red]interrupted[/]: partial downloads are kept as .part files and resume next time")
        return 130


# -- commands -------------------------------------------------------------------------------

def _core(config: Config):
    from .core import ComfyFixerCore

    return ComfyFixerCore(config)


def _scan(args, config, out, err) -> int:
    from .report import reference_to_json, summarize

    with _core(config) as core:
        workflows, errors = core.scan_paths(args.paths)
        for wf in workflows:
            core.check(wf.model_references)
    if not workflows and errors:
        for e in errors:
            err.print(f"[red]cannot read[/] {e['path']}: {e['error']}")
        return EXIT_ERROR
    all_refs = [r for wf in workflows for r in wf.model_references]
    if args.json:
        report = {
            "report_version": 1,
            "comfyui_root": str(config.comfyui_root) if config.comfyui_root else None,
            "workflows": [
                {"path": wf.path, "format": wf.format, "warnings": list(wf.warnings),
                 "custom_node_types": sorted(wf.custom_node_types),
                 "references": [reference_to_json(r) for r in wf.model_references],
                 "summary": summarize(wf.model_references)}
                for wf in workflows
            ],
            "errors": errors,
            "summary": summarize(all_refs),
        }
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for wf in workflows:
            _print_references(out, wf)
        for e in errors:
            err.print(f"[red]cannot read[/] {e['path']}: {e['error']}")
        if not config.comfyui_root:
            err.print("[dim]no --comfyui-root given: statuses not checked[/]")
    if errors:
        return EXIT_ERROR
    return EXIT_MISSING if summarize(all_refs)["missing"] else EXIT_OK


def _resolve(args, config, out, err) -> int:
    from .report import analysis_to_json, summarize

    with _core(config) as core:
        analysis = core.analyze_workflows(args.paths, backends=_backends(args))
    if args.json:
        print(json.dumps(analysis_to_json(analysis, config.min_confidence), indent=2, ensure_ascii=False))
    else:
        _print_resolutions(out, analysis, config.min_confidence)
        for e in analysis.errors:
            err.print(f"[red]cannot read[/] {e['path']}: {e['error']}")
    if analysis.errors and not analysis.workflows:
        return EXIT_ERROR
    return EXIT_MISSING if summarize(analysis.references)["missing"] else EXIT_OK


def _fix(args, config, out, err) -> int:
    from .report import run_to_json

    shown: List[bool] = []

    def confirm(run) -> bool:
        shown.append(True)
        if not args.json:
            _print_plan(out, run)
        if args.yes or args.json:
            return True
        if not sys.stdin.isatty():
            err.print("not a terminal: pass --yes to download without asking")
            raise SystemExit(EXIT_ERROR)
        from rich.prompt import Confirm

        return Confirm.ask(f"Download {len(run.plan)} file(s)?", console=out, default=True)

    with _core(config) as core, _ProgressRenderer(out, quiet=args.json) as progress:
        run = core.run(args.paths, args.output_dir, _backends(args), dry_run=args.dry_run,
                       min_confidence=config.min_confidence, include_optional=args.include_optional,
                       on_event=progress.on_event, confirm=confirm)
    if not shown and not args.json:
        _print_plan(out, run)
    if args.json:
        print(json.dumps(run_to_json(run), indent=2, ensure_ascii=False))
    else:
        _print_outcome(out, run)
    if run.workflows_scanned == 0:
        return EXIT_ERROR
    return EXIT_MISSING if run.failures else EXIT_OK


def _annotate(args, config, out, err) -> int:
    from .annotate import annotate_workflow_with_count, sources_from_analysis
    from .fileutils import save_json_file
    from .scan import load_workflow

    with _core(config) as core:
        analysis = core.analyze_workflows([args.path], backends=_backends(args))
        if analysis.errors:
            err.print(f"[red]cannot read[/] {args.path}: {analysis.errors[0]['error']}")
            return EXIT_ERROR
        document = load_workflow(args.path)
        sources = sources_from_analysis(analysis, core, config.min_confidence)
        annotated, count = annotate_workflow_with_count(document, sources, config=config)
    save_json_file(annotated, args.output)
    out.print(f"wrote {args.output}: sources embedded for {count} model reference(s)")
    return EXIT_OK


def _script(args, config, out, err) -> int:
    with _core(config) as core:
        analysis = core.analyze_workflows(args.paths, backends=_backends(args))
        specs, failures = core.plan(analysis, config.min_confidence)
        text = core.downloader.generate_script(specs, shell=args.shell)
    if args.output:
        from .fileutils import atomic_write_bytes

        atomic_write_bytes(args.output, text.encode("utf-8"))
        out.print(f"wrote {args.output}: {len(specs)} download(s)")
    else:
        sys.stdout.write(text)
    for f in failures:
        err.print(f"[yellow]not in script[/] {f.directory}/{f.filename}: {f.reason}")
    return EXIT_MISSING if failures else EXIT_OK


# -- rendering -----------------------------------------------------------------------------

def _print_references(out, wf) -> None:
    from rich.table import Table

    from .report import summarize

    s = summarize(wf.model_references)
    title = (f"{wf.path}  [dim]({wf.format})[/]  "
             f"[green]{s['present']} present[/] · [yellow]{s['elsewhere']} elsewhere[/] · "
             f"[red]{s['missing']} missing[/]" + (f" · {s['optional_missing']} optional missing" if s["optional_missing"] else ""))
    table = Table(title=title, title_justify="left", expand=False)
    for col in ("status", "folder", "file", "node", "url / found at"):
        table.add_column(col, overflow="fold")
    for ref in wf.model_references:
        status = ref.status or "unchecked"
        style = _STATUS_STYLE.get(status, "")
        label = status + (" (optional)" if ref.optional else "")
        node = f"{ref.node_type} #{ref.node_id}" + (f" (+{len(ref.locations) - 1})" if len(ref.locations) > 1 else "")
        extra = ref.found_path or ref.url or ""
        table.add_row(f"[{style}]{label}[/]", ref.expected_directory, ref.filename, node, extra)
    out.print(table)


def _print_resolutions(out, analysis, min_confidence) -> None:
    from rich.table import Table

    if not analysis.resolutions:
        out.print("[green]nothing is missing[/]")
        return
    for res in analysis.resolutions:
        ref = res.reference
        table = Table(title=f"[red]missing[/] {ref.expected_directory}/{ref.filename}"
                      + (" [dim](optional)[/]" if ref.optional else ""), title_justify="left")
        for col in ("#", "conf.", "backend", "file", "size", "reason"):
            table.add_column(col, overflow="fold")
        chosen = res.choose(min_confidence)
        for i, c in enumerate(res.candidates[:5]):
            mark = "→" if c is chosen else str(i + 1)
            style = "green" if c.confidence >= 0.9 else "yellow" if c.confidence >= 0.8 else "dim"
            table.add_row(mark, f"[{style}]{c.confidence:.0%}[/]", c.backend, c.filename, _size(c.size_bytes), c.reason)
        if not res.candidates:
            table.add_row("", "", "", "[dim]no candidate found[/]", "", "")
        out.print(table)
        for e in res.errors:
            out.print(f"  [yellow]{e.get('type')}[/]: {e.get('message')}")


def _print_plan(out, run) -> None:
    from rich.table import Table

    out.print(f"{run.workflows_scanned} workflow(s): {run.models_found} model(s), "
              f"{run.models_present} on disk, {run.models_missing} missing")
    if run.plan:
        table = Table(title="download plan" + (" (dry run)" if run.dry_run else ""), title_justify="left")
        for col in ("folder", "file", "from", "conf.", "size", "why"):
            table.add_column(col, overflow="fold")
        for spec in run.plan:
            table.add_row(spec["directory"], spec["filename"], spec["source"], f"{spec['confidence']:.0%}",
                          _size(spec.get("size")), spec.get("reason", ""))
        out.print(table)
    for f in run.failures:
        out.print(f"[yellow]skipped[/] {f.directory}/{f.filename}: {f.reason}")


def _print_outcome(out, run) -> None:
    if run.dry_run:
        out.print("[dim]dry run: nothing downloaded[/]")
        return
    for d in run.downloads:
        if d.success:
            out.print(f"[green]✓[/] {d.save_path}" + (" (sha256 verified)" if d.verified else ""))
        else:
            out.print(f"[red]✗[/] {d.filename}: {d.error_message}")
    out.print(f"fixed {run.models_resolved} of {run.models_missing} missing model(s)")


class _ProgressRenderer:
    """Draws download ProgressEvents as rich progress bars (started on the first event)."""

    def __init__(self, console, *, quiet: bool):
        self.console, self.quiet = console, quiet
        self.progress = None
        self.tasks: Dict[str, Any] = {}

    def __enter__(self) -> "_ProgressRenderer":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def on_event(self, event) -> None:
        if self.quiet:
            return
        if self.progress is None:
            from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                       TransferSpeedColumn)

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), TimeRemainingColumn(), console=self.console)
            self.progress.start()
        key = event.item_id or event.filename
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(event.filename, total=event.total)
        self.progress.update(self.tasks[key], completed=event.downloaded, total=event.total,
                             description=f"{event.filename} [dim]{event.state}[/]")


def _backends(args) -> Optional[List[str]]:
    raw = getattr(args, "backends", None)
    return [b.strip() for b in raw.split(",") if b.strip()] if raw else None


def _size(n: Optional[int]) -> str:
    if not n:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "?"


def _setup_logging(verbosity: int) -> None:
    import logging

    from .logs import get_logger

    if verbosity <= 0:
        return
    from rich.logging import RichHandler

    logger = get_logger()
    logger.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)
    handler = RichHandler(show_path=False)
    logger.addHandler(handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
