"""`cnnctl report`: a finished run's report.html, rewritten (the page is built in
`cnnctl.session.run_report`, which `cnnctl train` also calls when it ends)."""

from __future__ import annotations

from pathlib import Path

from cnnctl.artifacts.outputs import claim_output
from cnnctl.core.errors import ConfigError
from cnnctl.session.run_report import REPORT, write_report


def report(
    run_dir: Path, out: Path | None = None, *, force: bool = False, device: str = "auto"
) -> tuple[Path, float]:
    """Write the run's report: <run>/report.html (cnnctl's own file, rewritten freely) or
    `out` (claimed as any output). Returns (path, seconds)."""
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: not a run directory (give the folder that holds best.pt)")
    if not (run_dir / "best.pt").is_file():
        raise ConfigError(f"{run_dir}: no best.pt, so no epoch finished; nothing to report")
    if out is not None:
        if out.suffix.lower() not in (".html", ".htm"):
            raise ConfigError(f"--out {out}: a report is an .html file")
        claim_output(out, force=force, inputs=[run_dir / "best.pt"], option="--out")
    return write_report(run_dir, out or run_dir / REPORT, device=device)
