"""JupyterLab's save hook for runbooks: the file in git stays the runbook, the operator's work is kept apart.

An operator works a runbook in JupyterLab and saves it. Saved as it is, the runbook in git
would carry outputs, execution counts and run metadata (546 changed lines after one daily run),
and `git status` shows it modified even when nbstripout's filter would clean it, because git
sees the size change before it runs the filter. So `make lab` installs this hook: on every save
of a notebook the executed notebook, outputs included, is written to ccops' private home
(`<home>/interactive/<path>`), where `ctx.finish()` archives it from, and the file written to
`runbooks/` is the notebook as nbstripout's filter would store it - byte for byte the stored
runbook when the operator changed no code.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from ccops.core import fs

# What the git filter strips besides outputs and counts (the Makefile's NBSTRIPOUT_EXTRA_KEYS:
# tests/test_lab.py keeps the two equal).
EXTRA_KEYS = ("metadata.language_info", "metadata.papermill", "cell.metadata.papermill")
INTERACTIVE_DIR = "interactive"


def working_copy(home: Path, notebook_path: str) -> Path:
    """Where the executed copy of `notebook_path` (relative to the lab's root) is kept in ccops' home."""
    parts = [p for p in PurePosixPath(notebook_path.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
    return Path(home) / INTERACTIVE_DIR / Path(*parts)


def keep_working_copy(content: dict[str, Any], path: str, home: Path) -> Path:
    """Write the executed notebook, outputs and all, to the home (0600 in 0700 folders), atomically."""
    import nbformat

    target = working_copy(home, path)
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fs.write_atomic(target, nbformat.writes(nbformat.from_dict(content)))
    return target


def stripped(content: dict[str, Any]) -> Any:
    """The notebook as the git filter stores it: no outputs, no counts, no run metadata; cell ids kept."""
    import nbformat
    from nbstripout._utils import strip_output

    return strip_output(nbformat.from_dict(content), keep_output=False, keep_count=False, keep_id=True,
                        extra_keys=list(EXTRA_KEYS))


def pre_save_hook(model: dict[str, Any], path: str, contents_manager: Any = None, **_: Any) -> None:
    """jupyter_server's ContentsManager.pre_save_hook: keep the work in the home, save the runbook clean.

    A notebook that cannot be kept (the home unwritable) is saved as the operator has it: losing
    their work to keep git tidy would be the wrong trade.
    """
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    from ccops.core.settings import load_settings

    try:
        keep_working_copy(model["content"], path, load_settings().home)
    except OSError:
        return
    model["content"] = stripped(model["content"])
