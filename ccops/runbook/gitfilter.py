"""nbstripout as git's clean filter for runbooks (`make git-filter` installs it), without its fixed second.

git runs the clean filter on every notebook whose stat data changed since the index saw it: on
`git add`, and on `git status` or `git diff` after JupyterLab saved a runbook. Stock
`python -m nbstripout` spent 1.8 s of CPU per notebook, 1.2 s of it importing `rfc3987_syntax`
(jsonschema's format checker compiles its grammars at import, for a URI format the notebook schema
never uses; see papermill_entry). This is nbstripout's own command line with jsonschema's unused
format checkers marked absent: the same options, the same output byte for byte (tests/test_lab.py
compares it with stock nbstripout on a worked runbook, and checks every stored runbook with it).
"""

from __future__ import annotations

from ccops.runbook.papermill_entry import skip_unused_format_checkers


def main() -> None:
    skip_unused_format_checkers()
    from nbstripout._nbstripout import main as nbstripout_main

    nbstripout_main()


if __name__ == "__main__":
    main()
