"""steep launch: torchrun commands and Slurm scripts, checked as text and as shell; no GPU."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from steep.cli import build_parser, main
from steep.cli.launch import cmd_launch
from steep.config import ConfigError, load_config
from steep.launch.command import shell_join
from steep.launch.slurm import SlurmOptions, slurm_script
from steep.launch.torchrun import micro_batches_per_rank, torchrun_command, visible_gpus
from tests import held_steep

SMOKE = Path(__file__).resolve().parents[1] / "examples" / "smoke.yaml"
# smoke.yaml: global_batch_tokens 1024 = seq_len 128 x micro_batch_size 4 x 2
BIG_BATCH = "train.global_batch_tokens=4096"  # splits over 8 ranks


def _sbatch_header(script: str) -> list[str]:
    """What sbatch reads: #SBATCH lines before the first command (it stops at that one)."""
    header = []
    for line in script.splitlines()[1:]:
        if line.strip() and not line.startswith("#"):
            break
        if line.startswith("#SBATCH "):
            header.append(line.removeprefix("#SBATCH "))
    return header


def test_single_node_command() -> None:
    cmd = torchrun_command(str(SMOKE), ["train.steps=5"], gpus_per_node=4)
    assert cmd == [
        "torchrun",
        "--standalone",
        "--nproc-per-node",
        "4",
        "-m",
        "steep",
        "train",
        str(SMOKE),
        "--set",
        "train.steps=5",
    ]


def test_shell_join_quotes_arguments_but_not_node_variables() -> None:
    cmd = torchrun_command("/runs/my config.yaml", ["run.name=a b"], gpus_per_node=2, nodes=3)
    line = shell_join(cmd)
    assert "'/runs/my config.yaml'" in line and "'run.name=a b'" in line
    assert '--node-rank "$NODE_RANK"' in line
    assert '--rdzv-endpoint "$MASTER_ADDR:29500"' in line
    expanded = subprocess.run(
        ["bash", "-c", f"printf '%s\\n' {line}"],
        env={"NODE_RANK": "1", "MASTER_ADDR": "node0", "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert expanded[expanded.index("--node-rank") + 1] == "1"
    assert expanded[expanded.index("--rdzv-endpoint") + 1] == "node0:29500"
    assert "/runs/my config.yaml" in expanded and "run.name=a b" in expanded


def test_multi_node_flags() -> None:
    cmd = torchrun_command(str(SMOKE), [], gpus_per_node=8, nodes=4, port=29600, rdzv_id="cpt")
    assert cmd[:3] == [sys.executable, "-m", "steep.launch.elastic"]  # torchrun, checked
    pairs = dict(zip(cmd[3:-4:2], cmd[4:-4:2], strict=True))
    assert pairs == {
        "--nnodes": "4",
        "--node-rank": "$NODE_RANK",
        "--nproc-per-node": "8",
        "--rdzv-backend": "c10d",
        "--rdzv-endpoint": "$MASTER_ADDR:29600",
        "--rdzv-id": "cpt",
    }
    assert "--standalone" not in cmd
    assert cmd[-4:] == ["-m", "steep", "train", str(SMOKE)]


def test_commands_are_what_torchrun_accepts() -> None:
    run = pytest.importorskip("torch.distributed.run")
    parser = run.get_args_parser()
    single = parser.parse_args(torchrun_command("c.yaml", ["a=1"], gpus_per_node=2)[1:])
    assert single.standalone and single.nproc_per_node == "2" and single.module
    assert (single.training_script, single.training_script_args) == (
        "steep",
        ["train", "c.yaml", "--set", "a=1"],
    )
    multi = torchrun_command("c.yaml", [], gpus_per_node=8, nodes=2, rdzv_id="j")
    filled = [{"$NODE_RANK": "1", "$MASTER_ADDR:29500": "node0:29500"}.get(a, a) for a in multi]
    args = parser.parse_args(filled[3:])
    assert (args.nnodes, args.node_rank, args.nproc_per_node) == ("2", 1, "8")
    assert (args.rdzv_backend, args.rdzv_endpoint, args.rdzv_id) == ("c10d", "node0:29500", "j")


RUN = "/runs/cpt-1"


def _script(**kw) -> str:
    defaults = dict(nodes=2, gpus_per_node=8, job_name="cpt", port=29555, run_dir=RUN)
    return slurm_script(str(SMOKE), ["train.steps=5", "run.name=a b"], **{**defaults, **kw})


def test_slurm_script_contents() -> None:
    script = _script(partition="gpu", account="proj1", time="2-00:00:00", log_dir="/x/logs")
    assert script.startswith("#!/bin/bash\n")
    assert _sbatch_header(script) == [
        "--job-name=cpt",
        "--nodes=2",
        "--ntasks-per-node=1",
        "--gpus-per-node=8",
        "--cpus-per-task=32",
        "--time=2-00:00:00",
        "--partition=gpu",
        "--account=proj1",
        "--output=/x/logs/%x-%j.out",
        "--open-mode=append",
        "--requeue",
        "--signal=B:USR1@300",
    ]
    assert 'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in script
    assert "export OMP_NUM_THREADS=1" in script
    assert "export TORCH_NCCL_ASYNC_ERROR_HANDLING=1" in script
    command = script[script.index("srun --kill") : script.index(" &\n")].replace("\\\n", " ")
    assert shlex.split(command) == [
        "srun",
        "--kill-on-bad-exit=1",
        sys.executable,
        "-m",
        "steep.launch.elastic",
        "--nnodes",
        "$SLURM_NNODES",
        "--nproc-per-node",
        "8",
        "--rdzv-id",
        "$SLURM_JOB_ID",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        "$MASTER_ADDR:29555",
        "--signals-to-handle",
        "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1",
        "--shutdown-timeout",
        "300",
        "-m",
        "steep",
        "train",
        "${STEEP_ARGS[@]}",
    ]
    assert f"    STEEP_ARGS=(--resume {RUN})" in script
    assert (
        f"    STEEP_ARGS=({SMOKE} --set train.steps=5 --set 'run.name=a b' --out {RUN})" in script
    )


def test_slurm_script_leaves_out_unset_options() -> None:
    header = _sbatch_header(_script())
    assert not any(h.startswith(("--partition", "--account")) for h in header)
    assert "--time=24:00:00" in header


@pytest.mark.parametrize(
    "kw", [{"time": "2h"}, {"partition": "gpu\n#SBATCH --x"}, {"account": "a b"}]
)
def test_slurm_script_refuses_values_that_break_the_header(kw: dict) -> None:
    with pytest.raises(ConfigError, match="--(time|partition|account)"):
        _script(**kw)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_slurm_script_is_valid_bash_and_runs_with_stub_slurm(tmp_path: Path) -> None:
    script = tmp_path / "job.sbatch"
    run = tmp_path / "run"
    script.write_text(_script(workdir=str(tmp_path), home=str(tmp_path / "home"), run_dir=str(run)))
    subprocess.run(["bash", "-n", str(script)], check=True)
    # Stand-ins for Slurm's tools: run the script as a node of a 2-node allocation would.
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "scontrol").write_text('#!/bin/sh\nprintf "gpu-a7\\ngpu-a8\\n"\n')
    (stubs / "srun").write_text(
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > argv.txt\n"
        'printf "%s %s %s %s\\n" "$MASTER_ADDR" "$OMP_NUM_THREADS" "$STEEP_HOME" "$PWD" > env.txt\n'
    )
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = {
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "SLURM_JOB_NODELIST": "gpu-a[7-8]",
        "SLURM_NNODES": "2",
        "SLURM_JOB_ID": "4242",
    }
    subprocess.run(["bash", str(script)], env=env, cwd="/", check=True)
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    assert argv[:14] == [
        "--kill-on-bad-exit=1",
        sys.executable,
        "-m",
        "steep.launch.elastic",
        "--nnodes",
        "2",
        "--nproc-per-node",
        "8",
        "--rdzv-id",
        "4242",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        "gpu-a7:29555",
    ]
    assert argv[18:] == ["-m", "steep", "train", str(SMOKE)] + [
        "--set",
        "train.steps=5",
        "--set",
        "run.name=a b",
        "--out",
        str(run),
    ]
    # a run folder with a config.yaml: this run, started before; the job resumes it
    run.mkdir()
    (run / "config.yaml").write_text("run: {}\n")
    subprocess.run(["bash", str(script)], env=env, cwd="/", check=True)
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    assert argv[18:] == ["-m", "steep", "train", "--resume", str(run)]
    assert (tmp_path / "env.txt").read_text().split() == [
        "gpu-a7",
        "1",
        str(tmp_path / "home"),
        str(tmp_path),
    ]


def test_batch_split_error_names_fields_and_numbers() -> None:
    config = load_config(SMOKE)
    assert micro_batches_per_rank(config, nodes=1, gpus_per_node=2) == 1
    with pytest.raises(ConfigError) as err:
        micro_batches_per_rank(config, nodes=1, gpus_per_node=3)
    msg = str(err.value)
    for part in ("train.global_batch_tokens=1024", "data.seq_len", "train.micro_batch_size"):
        assert part in msg
    assert "128 x 4 x 3 = 1536" in msg and "3 ranks" in msg
    assert "1536 (the smallest)" in msg  # nothing valid below 1024

    config = load_config(SMOKE, ["train.global_batch_tokens=5120"])
    with pytest.raises(ConfigError) as err:
        micro_batches_per_rank(config, nodes=2, gpus_per_node=4)  # unit 4096
    assert "4096 (below) or 8192 (above)" in str(err.value)


def test_visible_gpus_reads_cuda_visible_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,3")
    assert visible_gpus() == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,-1,3")  # CUDA stops at an invalid id
    assert visible_gpus() == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == 0


def test_typo_fails_before_any_file_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "jobs" / "job.sbatch"
    argv = ["launch", str(SMOKE), "--set", "train.stepz=3", "--slurm", str(out), "--nodes", "2"]
    with pytest.raises(ConfigError, match="stepz"):
        cmd_launch(build_parser().parse_args(argv))
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "steep launch: error:" in captured.err and "'steps'" in captured.err
    assert not (tmp_path / "jobs").exists()


def test_cli_writes_slurm_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "jobs" / "cpt.sbatch"
    argv = ["launch", str(SMOKE), "--set", BIG_BATCH, "--slurm", str(out)]
    argv += ["--nodes", "2", "--gpus-per-node", "4", "--partition", "gpu", "--port", "29400"]
    assert main(argv) == 0
    script = out.read_text()
    assert os.access(out, os.X_OK)
    assert (tmp_path / "jobs" / "logs").is_dir()
    header = _sbatch_header(script)
    assert "--job-name=smoke" in header and "--nodes=2" in header
    assert "--gpus-per-node=4" in header and "--partition=gpu" in header
    assert '--rdzv-endpoint "$MASTER_ADDR:29400"' in script
    assert (
        f"STEEP_ARGS=({SMOKE} --set {BIG_BATCH} --out {tmp_path}/steep-home/runs/smoke-" in script
    )
    assert sorted(p.name for p in out.parent.iterdir()) == ["cpt.sbatch", "logs"]  # no temp left
    stdout = capsys.readouterr().out
    assert "2 nodes x 4 GPUs = 8 ranks" in stdout
    assert f"sbatch {out}" in stdout


def test_cli_prints_single_node_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert main(["launch", str(SMOKE), "--set", "train.steps=5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# 1 node x 2 GPUs = 2 ranks")
    cmd = shlex.split(lines[-1])
    assert Path(cmd[0]).name == "torchrun"
    assert cmd[1:] == ["--standalone", "--nproc-per-node", "2", "-m", "steep", "train"] + [
        str(SMOKE),
        "--set",
        "train.steps=5",
    ]


def test_cli_reports_a_batch_that_does_not_split(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["launch", str(SMOKE), "--gpus-per-node", "3"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "1536" in captured.err


def test_slurm_script_pretokenizes_before_any_rank_starts(tmp_path: Path) -> None:
    """--pretokenize: the batch step runs `steep data tokenize --config` once, then srun."""
    script = tmp_path / "job.sbatch"
    python = tmp_path / "bin" / "python"
    script.write_text(_script(pretokenize=True, python=str(python), home=str(tmp_path / "home")))
    subprocess.run(["bash", "-n", str(script)], check=True)
    (tmp_path / "bin").mkdir()
    for name, body in {
        "python": "printf 'tokenize %s\\n' \"$*\" >> order.txt",
        "srun": "printf 'srun\\n' >> order.txt",
        "scontrol": 'printf "gpu-a7\\n"',
    }.items():
        (tmp_path / "bin" / name).write_text(f"#!/bin/sh\n{body}\n")
        (tmp_path / "bin" / name).chmod(0o755)
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "gpu-a7"}
    env.update(SLURM_NNODES="1", SLURM_JOB_ID="7")
    subprocess.run(["bash", str(script)], env=env, cwd=tmp_path, check=True)
    assert (tmp_path / "order.txt").read_text().splitlines() == [
        f"tokenize -m steep data tokenize --config {SMOKE} --set train.steps=5 --set run.name=a b",
        "srun",
    ]
    assert "data tokenize" not in _script()  # only when asked for


def test_cli_prints_the_pretokenize_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["launch", str(SMOKE), "--gpus-per-node", "2", "--pretokenize"]) == 0
    out = capsys.readouterr().out.splitlines()
    i = out.index("# First, on one machine that sees the data (tokenizes into the shared cache):")
    assert out[i + 1].endswith(f"-m steep data tokenize --config {SMOKE}")
    assert "torchrun" in out[-1]


def _stubs(tmp_path: Path, **bodies: str) -> dict[str, str]:
    """Stand-ins for Slurm's tools in tmp_path/bin; the env that puts them first."""
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    for name, body in bodies.items():
        (stubs / name).write_text(f"#!/bin/bash\n{body}\n")
        (stubs / name).chmod(0o755)
    return {"PATH": f"{stubs}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "n1"}


def test_cpu_script_asks_for_no_gpus_and_shares_the_task_cores(tmp_path: Path) -> None:
    script = tmp_path / "job.sbatch"
    script.write_text(_script(nodes=1, gpus_per_node=2, cpu=True, run_dir=str(tmp_path / "r")))
    header = _sbatch_header(script.read_text())
    assert "--cpus-per-task=2" in header and not any("gpus" in h for h in header)
    assert "--standalone" in script.read_text()  # one node: no shared rendezvous port
    env = _stubs(tmp_path, scontrol="echo n1", srun='echo "$OMP_NUM_THREADS $*" > srun.txt')
    env.update(SLURM_NNODES="1", SLURM_JOB_ID="9", SLURM_CPUS_PER_TASK="4")
    subprocess.run(["bash", str(script)], env=env, cwd=tmp_path, check=True)
    threads, *argv = (tmp_path / "srun.txt").read_text().split()
    assert threads == "2" and argv[:4] == [
        "--kill-on-bad-exit=1",
        "torchrun",
        "--standalone",
        "--nproc-per-node",
    ]


def test_sigusr1_reaches_the_step_and_the_job_requeues_itself(tmp_path: Path) -> None:
    """Slurm's --signal=B:USR1 lands on the batch script: it passes the signal to srun (which
    forwards it to torchrun and the ranks), waits for the step, then requeues the job."""
    script = tmp_path / "job.sbatch"
    script.write_text(_script(nodes=1, gpus_per_node=1, run_dir=str(tmp_path / "r")))
    env = _stubs(
        tmp_path,
        scontrol='if [ "$1" = requeue ]; then echo "$*" > requeue.txt; else echo n1; fi',
        srun='trap "echo USR1 > step.txt; exit 3" USR1; touch started; '
        "for i in $(seq 300); do sleep 0.1; done",
    )
    env.update(SLURM_NNODES="1", SLURM_JOB_ID="4242")
    proc = subprocess.Popen(["bash", str(script)], env=env, cwd=tmp_path)
    # the step runs (its trap is set), and the script waits for it: it has its pid. A
    # signal sent before the script took $! would find no step to pass it to
    held_steep.wait_until("the step", lambda: (tmp_path / "started").exists(), proc, 60)
    held_steep.wait_until("the script's wait", lambda: _state(proc.pid) == "S", proc, 60)
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(timeout=20) == 0  # a stop to be resumed, not a failed job
    assert (tmp_path / "step.txt").read_text().strip() == "USR1"
    assert (tmp_path / "requeue.txt").read_text().strip() == "requeue 4242"


def _state(pid: int) -> str:
    """The kernel's state of ``pid``: R running, S sleeping (bash in ``wait``), Z, ..."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()[0]


def test_without_a_forwarding_torchrun_the_script_leaves_its_flags_out() -> None:
    script = _script(forward_usr1=False)
    assert "--signals-to-handle" not in script and "--requeue" in script
    assert "--signal=B:USR1@60" in _script(signal_s=60)
    with pytest.raises(ConfigError, match="--signal-before"):
        _script(signal_s=-1)
    with pytest.raises(ConfigError, match="--time"):  # steep sweep / studio: at the start
        SlurmOptions(time="2h")


def test_slurmjob_follows_the_job_and_exits_with_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """squeue shows the job twice, then it is gone; the log is copied; the run says done."""
    from steep.artifacts.runstatus import write_status
    from steep.launch import slurmjob

    run, out = tmp_path / "run", tmp_path / "job.out"
    run.mkdir()
    env = _stubs(
        tmp_path,
        sbatch=f'echo "$*" > {tmp_path}/sbatch.txt; echo "step 1" > {out}; echo 77',
        squeue=f"n=$(cat {tmp_path}/n 2>/dev/null || echo 0); echo $((n+1)) > {tmp_path}/n; "
        '[ "$n" -lt 2 ] && echo RUNNING || echo COMPLETED',
        scancel=f'echo "$*" > {tmp_path}/scancel.txt',
    )
    monkeypatch.setenv("PATH", env["PATH"])
    write_status(run, "done")
    assert slurmjob.main(["--run-dir", str(run), "--output", str(out), "--poll", "0.01", "x"]) == 0
    assert (tmp_path / "sbatch.txt").read_text().split() == ["--parsable", f"--output={out}", "x"]
    shown = capsys.readouterr().out
    assert "submitted Slurm job 77" in shown and "step 1" in shown  # the job's log, copied
    assert "Slurm job 77 RUNNING" in shown and "ended; run done" in shown
    write_status(run, "failed", "boom")
    (tmp_path / "n").unlink()
    assert slurmjob.follow(Path("x"), run, out, poll_s=0.01) == 1
    assert not (tmp_path / "scancel.txt").exists()


def test_slurmjob_cancels_the_job_on_sigterm(tmp_path: Path) -> None:
    """The studio's cancel is a SIGTERM to the follower: it becomes scancel, then exit 130."""
    env = _stubs(
        tmp_path,
        sbatch="echo 12",
        squeue=f"[ -e {tmp_path}/scancel.txt ] && echo CANCELLED || echo PENDING",
        scancel=f'echo "$*" > {tmp_path}/scancel.txt',
    )
    (tmp_path / "run").mkdir()
    argv = [sys.executable, "-m", "steep.launch.slurmjob", "--run-dir", str(tmp_path / "run")]
    proc = subprocess.Popen([*argv, "--poll", "0.05", "x"], env={**os.environ, **env},
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert "submitted Slurm job 12" in proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 130
    assert (tmp_path / "scancel.txt").read_text().strip() == "12"
