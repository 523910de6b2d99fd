"""tests/airflow/ runs under `make test-airflow` only, which installs Apache Airflow in its own virtualenv first.

`make test` collects nothing here: Airflow is a 300 MB install that the main
suite must not need. `make test-airflow` names the Airflow it installed in
CCOPS_AIRFLOW_BIN, and only then are these tests collected.
"""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.environ.get("CCOPS_AIRFLOW_BIN") else ["test_*.py"]
