"""GPU leases: concurrent jobs on one machine get disjoint device ids (simulated inventory, real processes)."""

import os
import re
import signal
import subprocess
import sys

import pytest
from helpers import REPO, VENV_BIN, run_tool
from test_envs import JOB_RULES

from genview.errors import GenviewError
from genview.runtime.gpu_lease import gpu_inventory, lease_gpus, parse_inventory

# A holder prints its devices, then keeps its lease (the exec'd shell holds the locks) until a line on stdin.
HOLD = ["devices", "run", "--", "sh", "-c", 'echo "$CUDA_VISIBLE_DEVICES"; read _']


@pytest.fixture
def env(tmp_path):
    """A simulated 2-GPU machine with its own lease folder; waits are short so a bug fails instead of hanging."""
    environ = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    return {
        **environ,
        "GENVIEW_GPUS": "2",
        "GENVIEW_GPU_LEASE_DIR": str(tmp_path / "leases"),
        "GENVIEW_GPU_LEASE_TIMEOUT": "30",
    }


def genview(env, *args, gpus=1):
    return subprocess.Popen(
        [sys.executable, "-m", "genview", "--gpus", str(gpus), *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def devices_of(process) -> str:
    line = process.stdout.readline().strip()
    assert line, f"no devices printed (exit {process.poll()}): {process.stderr.read()[-2000:]}"
    return line


def release(process) -> None:
    process.communicate("\n", timeout=30)
    assert process.returncode == 0


def show(env, gpus=1) -> subprocess.CompletedProcess:
    option = [] if gpus is None else ["--gpus", str(gpus)]
    return subprocess.run(
        [sys.executable, "-m", "genview", *option, "devices", "show"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_inventory_is_a_count_or_a_list_of_ids():
    assert parse_inventory("2") == [0, 1]
    assert parse_inventory("0") == []
    assert parse_inventory("1,3") == [1, 3]
    assert parse_inventory(" 5, ") == [5]
    for bad in ("x", "-1", "1,1", "1,-2"):
        with pytest.raises(GenviewError, match="GENVIEW_GPUS="):
            parse_inventory(bad)


def test_inventory_from_nvidia_smi_counts_gpus_not_mig_devices(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\necho 'GPU 0: H100 (UUID: GPU-a)'\necho '  MIG 1g.10gb Device 0: (UUID: MIG-b)'\n"
        "echo 'GPU 1: H100 (UUID: GPU-c)'\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert gpu_inventory({}) == [0, 1]
    assert gpu_inventory({"GENVIEW_GPUS": "3,"}) == [3]


def test_a_job_without_gpus_gets_none_and_a_cpu_machine_is_left_alone():
    environ = {"GENVIEW_GPUS": "2"}
    assert lease_gpus(0, environ) == "" and environ["CUDA_VISIBLE_DEVICES"] == ""
    environ = {"GENVIEW_GPUS": "0"}  # a CPU machine
    assert lease_gpus(1, environ) is None and lease_gpus(0, environ) is None and environ == {"GENVIEW_GPUS": "0"}


def test_concurrent_jobs_get_disjoint_devices_and_a_waiter_gets_the_freed_one(env):
    first, second = genview(env, *HOLD), genview(env, *HOLD)
    first_id, second_id = devices_of(first), devices_of(second)
    assert {first_id, second_id} == {"0", "1"}
    waiter = genview(env, "devices", "show")
    with pytest.raises(subprocess.TimeoutExpired):
        waiter.wait(timeout=1.5)  # both devices are held: it waits
    release(first)
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    assert out.strip() == f"CUDA_VISIBLE_DEVICES={first_id}"
    assert "waiting for 1 free GPU(s) (held: GPU 0 by pid" in err
    release(second)


def test_a_scheduler_assignment_is_kept_and_takes_no_lease(env):
    holders = [genview(env, *HOLD), genview(env, *HOLD)]
    for holder in holders:
        devices_of(holder)
    result = show({**env, "CUDA_VISIBLE_DEVICES": "7", "GENVIEW_GPU_LEASE_TIMEOUT": "0"})
    assert result.returncode == 0, result.stderr  # no wait although every device is held
    assert result.stdout.strip() == "CUDA_VISIBLE_DEVICES=7"
    for holder in holders:
        release(holder)


def test_a_killed_holder_frees_its_device(env):
    env = {**env, "GENVIEW_GPUS": "1"}
    holder = genview(env, *HOLD)
    assert devices_of(holder) == "0"
    busy = show({**env, "GENVIEW_GPU_LEASE_TIMEOUT": "0.2"})
    assert busy.returncode == 2
    assert f"no 1 free GPU(s) of 1 after 0.2 s (held: GPU 0 by pid {holder.pid}" in busy.stderr
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=30)
    result = show({**env, "GENVIEW_GPU_LEASE_TIMEOUT": "0"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "CUDA_VISIBLE_DEVICES=0"


def test_more_gpus_than_the_machine_has_is_a_clear_error(env):
    result = show(env, gpus=3)
    assert result.returncode == 2
    assert "genview devices: error: --gpus 3: this machine has 2 GPU(s) to lease (0,1;" in result.stderr


def test_a_cpu_machine_runs_unchanged(env):
    result = show({**env, "GENVIEW_GPUS": "0"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "CUDA_VISIBLE_DEVICES is not set (all GPUs)"


def test_a_job_that_declared_no_gpus_cannot_use_any(env):
    assert show(env, gpus=0).stdout.strip() == "CUDA_VISIBLE_DEVICES="
    assert show(env, gpus=None).stdout.strip() == "CUDA_VISIBLE_DEVICES is not set (all GPUs)"  # by hand: as is


SNAKEFILE = """
rule all:
    input:
        "a.txt",
        "b.txt",


# Each job records its devices, then its start and end times, holding its lease for 2 s.
JOB = (
    "python -m genview --gpus {resources.gpu} devices run -- sh -c"
    " 'echo $CUDA_VISIBLE_DEVICES > {output}; date +%s.%N >> {output}; sleep 2; date +%s.%N >> {output}'"
)


rule a:
    output:
        "a.txt",
    resources:
        gpu=1,
    shell:
        JOB


rule b:
    output:
        "b.txt",
    resources:
        gpu=1,
    shell:
        JOB
"""


@pytest.mark.workflow
def test_snakemake_jobs_running_together_get_different_devices(env, workdir, monkeypatch):
    for key in ("GENVIEW_GPUS", "GENVIEW_GPU_LEASE_DIR", "GENVIEW_GPU_LEASE_TIMEOUT"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    (workdir / "Snakefile").write_text(SNAKEFILE)
    run_tool(
        [
            VENV_BIN / "snakemake",
            "--cores",
            "2",
            "--resources",
            "gpu=2",
            "--snakefile",
            workdir / "Snakefile",
            "--directory",
            workdir,
        ],
        cwd=workdir,
        timeout=300,
    )
    (a_ids, a_start, a_end), (b_ids, b_start, b_end) = (
        (workdir / name).read_text().split() for name in ("a.txt", "b.txt")
    )
    assert {a_ids, b_ids} == {"0", "1"}
    assert float(a_start) < float(b_end) and float(b_start) < float(a_end), "the two jobs did not overlap"


@pytest.mark.parametrize(
    "rule", [r for r in JOB_RULES if re.search(r"\bgpu\s*=", r.directives.get("resources", ""))], ids=str
)
def test_every_gpu_rule_passes_its_count_to_the_lease(rule):
    shell = rule.literal("shell")
    calls = re.findall(r"python -m genview\s+(?:--gpus \{resources\.gpu\}\s)?", shell)
    assert calls and all("--gpus" in call for call in calls), (
        f"{rule} declares resources: gpu but its shell does not start with"
        f" `python -m genview --gpus {{resources.gpu}}`: {shell}"
    )
