"""``steep sweep``: short runs over a grid of settings, then the point to pick and why.

Every point is a normal ``steep train`` run in its own subprocess with the point's
``--set`` overrides, in ``SWEEP_DIR/points/<id>/``. The sweep resumes: rerun the same
command with ``--out SWEEP_DIR`` (or ``steep sweep --resume SWEEP_DIR``).

- ``plan``: the grid, the spec and its points, all validated before the first run;
- ``state``: ``sweep.json``, where the sweep stands, rewritten after every point;
- ``scheduler``: running the points on the devices there are, and ``run_sweep``;
- ``report``: each point's scores, the results table, results.md and the pick;
- ``pareto``: the Pareto front and the rule for the recommendation;
- ``law``, ``observe``, ``predict``, ``predreport``: the CPT law fitted on every eval and
  the big run predicted from it (``--predict-at``, ``--predict SWEEP_DIR --at``).
"""

from steep.sweep.pareto import DEFAULT_MAX_REGRESSION, Recommendation, Scored
from steep.sweep.plan import Axis, Point, Spec, parse_grid, plan, point_ids
from steep.sweep.report import PLOT_FILE, RESULTS_FILE, SweepResult, finish, score_point
from steep.sweep.scheduler import run_sweep
from steep.sweep.state import SWEEP_FILE, State, SweepError, load_spec, open_sweep, read_sweep

__all__ = [
    "DEFAULT_MAX_REGRESSION",
    "PLOT_FILE",
    "RESULTS_FILE",
    "SWEEP_FILE",
    "Axis",
    "Point",
    "Recommendation",
    "Scored",
    "Spec",
    "State",
    "SweepError",
    "SweepResult",
    "finish",
    "load_spec",
    "open_sweep",
    "parse_grid",
    "plan",
    "point_ids",
    "read_sweep",
    "run_sweep",
    "score_point",
]
