"""Where a run starts: step 0 with the base's eval as its baseline, or a resume's newest
checkpoint (model, optimizer, RNG, mixture position, baseline), then metrics.jsonl opened.

A resume on changed data (``--allow-data-change``) measures a new baseline with the base
still loaded; an added source's held-out set (``--allow-mixture-change``) gets its step-0
loss the same way, before the checkpoint replaces the weights.
"""

from __future__ import annotations

from pathlib import Path

from steep.artifacts import atomic
from steep.config import dump_config
from steep.train.build import Run
from steep.train.longctx import lengths_event
from steep.train.mixcontrol import unbaselined_sets
from steep.train.runfolder.drift import check_drift
from steep.train.track import Tracker
from steep.workspace import CONFIG_FILE


def restore(run: Run, resume: bool, allow: tuple[bool, bool] = (False, False)) -> None:
    """Set ``run.step``, its baseline and data changes; open the metrics log (a resume
    keeps the records up to its checkpoint); at step 0 evaluate the base. ``allow``:
    (a data change, a mixture change) on resume."""
    checkpoint, changed = _load(run, allow) if resume else (None, [])
    # a resume keeps the records up to the checkpoint; a restart from step 0, none
    kept = (run.step if checkpoint is not None else -1) if resume else None
    run.status.started = True
    if run.d.is_main:
        run.tracker = Tracker(run.run_dir, resume_step=kept, config=run.config)
    if run.step == 0:  # the base model is the baseline every later eval is compared with
        phase = "evaluating the base (step 0)"
        run.status.phase(phase)  # at once: the first batch's progress comes seconds later
        run.baseline = run.eval_and_log(phase)
        run.log(lengths_event(run.inputs.lengths, run.config.data.seq_len))
        run.eval_long_context()  # past the base's context: passkey, loss by position
    run.log(*run.mix.events(run.step, changed))  # a mix changed on resume: its step, what
    run.status.phase(("compiling, then " if run.config.train.compile else "") + "the first step")


def _load(run: Run, allow: tuple[bool, bool]) -> tuple[Path | None, list[str]]:
    """The newest checkpoint that loads, with what changed since (data, mixture): (its
    path or None when there is none yet, the mixture's changes in words)."""
    allow_data_change, allow_mixture_change = allow
    root, sets = run.checkpointer.root, run.inputs.eval_sets
    drift = check_drift(root, run.inputs.identity, allow_data_change, allow_mixture_change)
    if drift is not None:  # going on with new data: the base (still loaded) sets a new baseline
        drift["baseline"] = run.evaluator(sets)
    unseen = unbaselined_sets(root, sets) if allow_mixture_change else []
    new_baseline = run.evaluator(unseen) if unseen else {}  # an added source's held-out set
    checkpoint, state = run.checkpointer.newest(run.warm.set_step)
    if checkpoint is None:  # killed before its first checkpoint
        run.say(
            f"{run.run_dir} has no checkpoint yet: starting it again from step 0, with its config"
        )
        return None, []
    run.data_changes = list(state.get("data_changes", []))
    run.step, run.baseline = state["step"], {**state["baseline"], **new_baseline}
    if drift is not None:
        run.data_changes.append({**drift, "step": run.step})
        run.baseline = drift["baseline"]
    changed = run.mix.resume(state, run.step, allow_mixture_change)
    if changed and run.d.is_main:  # the next resume reads the mix it goes on with
        atomic.write_text(run.run_dir / CONFIG_FILE, dump_config(run.config))
        print(f"mixture changed at step {run.step}: {'; '.join(changed)}")
    was = state.get("world_size", 1)
    run.say(
        f"resumed from {checkpoint.name}"
        + (f" (written by {was} ranks)" if was != run.d.world else "")
    )
    return checkpoint, changed
