"""steep's one GPU table (#28 item 9): every row is found by its own name and by the names
torch and nvidia-smi report, and MFU's peak is the peak ``steep plan`` divides by."""

from __future__ import annotations

import pytest
import torch

from steep.config import parse_config
from steep.plan import devices
from steep.plan.devices import find_device
from steep.plan.estimate import make_plan, resolve_device
from steep.plan.flops import mfu
from steep.train import flops

# what torch.cuda.get_device_name / nvidia-smi --query-gpu=name say -> the row's name
REPORTED = {
    "NVIDIA H100 80GB HBM3": "H100 SXM",
    "NVIDIA H100 PCIe": "H100 PCIe",
    "NVIDIA H100 NVL": "H100 NVL",
    "NVIDIA GH200 480GB": "GH200",
    "NVIDIA H200": "H200",
    "NVIDIA B200": "B200",
    "NVIDIA A100-SXM4-40GB": "A100 40GB",
    "NVIDIA A100-SXM4-80GB": "A100 80GB",
    "NVIDIA L40": "L40",
    "NVIDIA L40S": "L40S",
    "NVIDIA L4": "L4",
    "NVIDIA A10G": "A10G",
    "NVIDIA A10": "A10",
    "AMD Instinct MI300X": "MI300X",
}
ROWS = devices._TABLE


def _config() -> object:
    return parse_config(
        {
            "model": {"base": "meta-llama/Llama-3.1-8B"},
            "data": {"seq_len": 4096, "sources": [{"name": "d", "paths": ["x.jsonl"]}]},
            "train": {"steps": 100, "global_batch_tokens": 4096 * 8},
        }
    )


@pytest.mark.parametrize("row", ROWS, ids=[r.device.name for r in ROWS])
def test_every_row_is_found_by_its_own_names(row: devices._Row) -> None:
    for name in (row.device.name, *row.reported):
        assert find_device(name) == row.device, name
        assert find_device(name.lower()) == row.device, name


@pytest.mark.parametrize("reported", sorted(REPORTED))
def test_reported_names_find_their_row(reported: str) -> None:
    assert find_device(reported).name == REPORTED[reported]


def test_the_wrong_rows_of_the_two_tables() -> None:
    """Before, a GH200 was planned as an H200 and flops.py had its own, shorter table."""
    assert find_device("NVIDIA GH200 480GB").memory_gib == 94.5
    assert find_device("NVIDIA L40").peak_tflops == 181.05  # not the L4's 121 or the L40S's
    assert find_device("NVIDIA H100 NVL").peak_tflops == 835.0
    assert not hasattr(flops, "PEAK_BF16")


@pytest.mark.parametrize("reported", sorted(REPORTED))
def test_mfu_and_the_plan_use_one_peak(reported: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: reported)
    mfu_peak = flops.device_peak_flops(torch.device("cuda"))
    device = resolve_device(_config(), reported)
    assert mfu_peak is not None and mfu_peak == device.peak_tflops * 1e12
    plan = make_plan(_config(), 1, device, suggest=False)
    # a step of the plan's time runs at the plan's MFU by training's formula
    tokens_per_s = plan.global_tokens / plan.step_s
    model_flops_token = plan.hw_flops_step / plan.global_tokens
    assert mfu(tokens_per_s, model_flops_token, mfu_peak) == pytest.approx(plan.mfu)


def test_an_unknown_device_has_no_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "Some Future Accelerator")
    assert flops.device_peak_flops(torch.device("cuda")) is None
    assert flops.device_peak_flops(torch.device("cpu")) is None
    assert flops.device_peak_flops(torch.device("cpu"), 10.0) == 10e12
