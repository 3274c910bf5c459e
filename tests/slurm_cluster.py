"""A private single-node SLURM cluster on this machine, for tests that submit real jobs (tests/test_slurm.py).

What it does (Debian/Ubuntu, as root, no systemd needed):
- installs the Debian packages ``slurmctld slurmd slurm-client munge`` with apt-get when a binary is missing;
- writes every file into one folder (``base``): ``etc/slurm.conf`` and ``etc/gres.conf`` (found through
  ``SLURM_CONF``, which the jobs inherit through ``sbatch --export=ALL``; ``/etc/slurm`` is never read or
  written), its own munge key and socket, state, spool, logs, an ``srun`` wrapper (see ``_write_files``)
  and two fake GPU devices (character devices cloned from /dev/null, declared as GRES ``gpu:fake:2``);
- starts munged, slurmctld and slurmd in the foreground as children of this process (so their PIDs are
  known), on free TCP ports, and waits until the node is idle;
- stops exactly those daemons at the end, after cancelling the cluster's jobs; what they leave (job steps) is
  found by the marker variables every process of this cluster carries in its environment.

No accounting daemon (slurmdbd + MariaDB) is started: it would add a database server and ~20 s of install and
start time, and the only thing it provides is ``sacct``. The Snakemake SLURM plugin reads job states with
``squeue`` instead when run with ``--slurm-status-command squeue`` (the node keeps finished jobs for
``MinJobAge`` seconds, so ``squeue``/``scontrol`` still show them after the run). Without that option the
plugin would poll ``sacct``, which fails without accounting, and wait forever.

The node declares more CPUs and memory than the machine has (``SlurmdParameters=config_overrides``): the
profile asks for site-sized memory and CPUs per job, SLURM only books them here (no cgroups), and the jobs are
small.

If SLURM cannot be brought up (not root, not Linux, no apt-get, a package or daemon fails), ``start()`` raises
``SlurmUnavailable`` with the reason, for the test to skip (or fail, under CI) with it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
# binary -> the package that ships it
BINARIES = {
    "slurmctld": "slurmctld",
    "slurmd": "slurmd",
    "sbatch": "slurm-client",
    "squeue": "slurm-client",
    "scontrol": "slurm-client",
    "sinfo": "slurm-client",
    "scancel": "slurm-client",
    "sacct": "slurm-client",
    "srun": "slurm-client",
    "munged": "munge",
    "munge": "munge",
    "unmunge": "munge",
}
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OWNER_VARIABLE = "GENVIEW_SLURM_TEST_OWNER"  # in the environment of every daemon and job of a test cluster
NODE = "localhost"


class SlurmUnavailable(RuntimeError):
    """SLURM could not be started here; the message says why."""


def _which(name: str) -> str | None:
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}{os.pathsep}{SYSTEM_PATH}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _environ_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def _processes_marked(predicate) -> list[int]:
    """PIDs (not this process) whose environment satisfies ``predicate(environ)``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            environ = _environ_of(int(entry.name))
            if environ and predicate(environ):
                pids.append(int(entry.name))
    return pids


def _kill_all(pids: list[int], grace_s: float = 5.0) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_pid_alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop_stale_clusters() -> list[int]:
    """Stop what test clusters of earlier, killed test processes left running (marked with ``OWNER_VARIABLE``
    naming a process that no longer exists); clusters of live test processes are left alone."""
    stale = _processes_marked(
        lambda env: OWNER_VARIABLE in env and env[OWNER_VARIABLE].isdigit() and not _pid_alive(int(env[OWNER_VARIABLE]))
    )
    _kill_all(stale)
    return stale


class LocalSlurm:
    """A private SLURM cluster under ``base``: ``start()``, ``env`` for clients and jobs, ``stop()``.

    Also a context manager (``with LocalSlurm(path) as cluster: ...``)."""

    def __init__(
        self,
        base: Path,
        *,
        partition: str = "genview_test",
        gpus: int = 2,
        cpus: int = 16,
        mem_mb: int = 512_000,
        min_job_age_s: int = 900,
        install: bool = True,
    ):
        self.base = Path(base).resolve()
        self.partition, self.gpus, self.cpus, self.mem_mb = partition, gpus, cpus, mem_mb
        self.min_job_age_s = min_job_age_s
        self.install = install
        self.conf = self.base / "etc" / "slurm.conf"
        self.munge_socket = self.base / "munge" / "munge.socket"
        self.daemons: dict[str, subprocess.Popen] = {}
        self.timings: dict[str, float] = {}  # seconds: install, start
        self.owner = str(os.getpid())

    # --- environment ----------------------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """Variables that make SLURM's client tools (and the jobs, which inherit them) use this cluster."""
        return {"SLURM_CONF": str(self.conf), OWNER_VARIABLE: self.owner}

    def client_env(self, base: dict | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env.update(self.env)
        env["PATH"] = os.pathsep.join([str(self.base / "bin"), env.get("PATH", ""), SYSTEM_PATH])
        for name in [k for k in env if k.startswith("SLURM_") and k != "SLURM_CONF"]:
            del env[name]  # a test run inside a SLURM job must not leak that job's settings
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster."""
        result = subprocess.run(list(args), env=self.client_env(), capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (finished ones for ``MinJobAge`` seconds) as a ``scontrol show
        job`` record: ``JobState``, ``ExitCode``, ``Comment`` (the plugin's ``rule_<name>...``),
        ``TresPerJob`` (what was asked, e.g. ``gres:gpu:1``), ``JOB_GRES`` (what was allocated, e.g.
        ``gpu:fake:1``; ``(null)`` for none)...
        """
        out = self.run("scontrol", "show", "job", "--details", "--oneliner").stdout
        records = []
        for line in out.splitlines():
            if line.startswith("JobId="):
                record: dict[str, str] = {}
                for token in line.split():  # the values read here hold no spaces
                    key, sep, value = token.partition("=")
                    if sep:
                        record.setdefault(key, value)
                records.append(record)
        return records

    # --- start ----------------------------------------------------------------------------------------------
    def start(self) -> LocalSlurm:
        if not sys.platform.startswith("linux"):
            raise SlurmUnavailable("not Linux")
        if os.geteuid() != 0:
            raise SlurmUnavailable("not root: the SLURM daemons (slurmd, as SlurmdUser=root) need root")
        stale = stop_stale_clusters()
        if stale:
            print(f"stopped {len(stale)} process(es) left by an earlier test cluster: {stale}")
        started = time.monotonic()
        self._ensure_packages()
        self.timings["install"] = time.monotonic() - started
        started = time.monotonic()
        try:
            self._write_files()
            self._start_munged()
            self._start_slurm()
        except SlurmUnavailable:
            self.stop()
            raise
        except (OSError, subprocess.SubprocessError) as error:
            self.stop()
            raise SlurmUnavailable(f"starting the daemons failed: {error}") from error
        self.timings["start"] = time.monotonic() - started
        return self

    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _ensure_packages(self) -> None:
        missing = sorted({package for binary, package in BINARIES.items() if _which(binary) is None})
        if not missing:
            return
        if not self.install:
            raise SlurmUnavailable(f"packages missing and installing is off: {' '.join(missing)}")
        apt = _which("apt-get")
        if apt is None:
            raise SlurmUnavailable(f"no apt-get to install the missing packages {' '.join(missing)}")
        env = {
            **os.environ,
            "DEBIAN_FRONTEND": "noninteractive",
            "PATH": f"{os.environ.get('PATH', '')}:{SYSTEM_PATH}",
        }
        lock = ["-o", "DPkg::Lock::Timeout=120"]
        for command in (
            [apt, *lock, "update", "-qq"],
            [apt, *lock, "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
        ):
            try:
                result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as error:
                raise SlurmUnavailable(f"{' '.join(command)} failed: {error}") from error
            if result.returncode != 0:
                tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
                raise SlurmUnavailable(f"{' '.join(command)} exited {result.returncode}: {' | '.join(tail)}")
        still = sorted(binary for binary in BINARIES if _which(binary) is None)
        if still:
            raise SlurmUnavailable(f"installed {' '.join(PACKAGES)} but still missing: {' '.join(still)}")

    def _write_files(self) -> None:
        if self.base.exists():
            shutil.rmtree(self.base)  # a fresh cluster: no saved state, job ids from 1
        for sub in ("bin", "etc", "state", "spool", "log", "dev", "munge"):
            (self.base / sub).mkdir(parents=True)
        self.base.chmod(0o755)
        # Fake GPUs: gres/gpu drops devices without a file and wants a character device: clone /dev/null.
        for index in range(self.gpus):
            path = self.base / "dev" / f"gpu{index}"
            try:
                os.mknod(path, 0o666 | 0o020000, os.makedev(1, 3))
            except OSError:
                path.symlink_to("/dev/null")  # no CAP_MKNOD: slurmd stat()s through the link
        # The SLURM plugin's job step (snakemake-executor-plugin-slurm-jobstep 0.6.1) drops every SLURM_*
        # variable but the job's identity before it calls `srun` inside the job, SLURM_CONF included: that
        # srun would then look for /etc/slurm/slurm.conf. This srun, first on the clients' PATH (jobs inherit
        # it), puts it back.
        srun = self.base / "bin" / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF="${{SLURM_CONF:-{self.conf}}}" exec {_which("srun")} "$@"\n')
        srun.chmod(0o755)
        gres = "AutoDetect=off\n"
        if self.gpus:
            gres += f"NodeName={NODE} Name=gpu Type=fake File={self.base}/dev/gpu[0-{self.gpus - 1}]\n"
        (self.base / "etc" / "gres.conf").write_text(gres)
        self.ctld_port, self.slurmd_port = _free_port(), _free_port()
        while self.slurmd_port == self.ctld_port:
            self.slurmd_port = _free_port()
        node_gres = f" Gres=gpu:fake:{self.gpus}" if self.gpus else ""
        self.conf.write_text(f"""\
# Written by tests/slurm_cluster.py for one test run; everything lives under {self.base}.
ClusterName=genviewtest
SlurmctldHost={NODE}(127.0.0.1)
SlurmUser=root
MailProg=/bin/true
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
StateSaveLocation={self.base}/state
SlurmdSpoolDir={self.base}/spool
SlurmctldPidFile={self.base}/slurmctld.pid
SlurmdPidFile={self.base}/slurmd.pid
SlurmctldLogFile={self.base}/log/slurmctld.log
SlurmdLogFile={self.base}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups: processes tracked by /proc, no CPU/device binding (the GPUs are fake anyway)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
# no slurmdbd: sacct does not work; squeue/scontrol show finished jobs for MinJobAge seconds
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge={self.min_job_age_s}
KillWait=5
DefMemPerCPU=1000
GresTypes=gpu
# the node books more CPUs and memory than the machine has (no cgroups enforce them)
SlurmdParameters=config_overrides
NodeName={NODE} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.mem_mb}{node_gres} State=UNKNOWN
PartitionName={self.partition} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
""")

    def _daemon_env(self) -> dict[str, str]:
        return {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "HOME": str(self.base), **self.env}

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.base / "log" / f"{name}.out", "wb")  # noqa: SIM115 (the daemon's output until it stops)
        try:
            process = subprocess.Popen(
                args,
                env=self._daemon_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        self.daemons[name] = process
        return process

    def _log_tail(self, *names: str, lines: int = 8) -> str:
        parts = []
        for name in names:
            for path in (self.base / "log" / f"{name}.out", self.base / "log" / f"{name}.log"):
                if path.is_file() and path.stat().st_size:
                    parts.append(f"{path.name}: " + " | ".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "; ".join(parts) or "no log output"

    def _wait(self, what: str, condition, timeout_s: float, daemons: tuple[str, ...]) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for name in daemons:
                code = self.daemons[name].poll()
                if code is not None:
                    raise SlurmUnavailable(
                        f"{name} exited with {code} while waiting for {what}: {self._log_tail(name)}"
                    )
            try:
                if condition():
                    return
            except (OSError, subprocess.SubprocessError):
                pass
            time.sleep(0.2)
        raise SlurmUnavailable(f"timed out after {timeout_s:g} s waiting for {what}: {self._log_tail(*daemons)}")

    def _start_munged(self) -> None:
        key = self.base / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        (self.base / "munge").chmod(0o700)
        munged = _which("munged")
        self._spawn(
            "munged",
            [
                munged,
                "--foreground",
                "--force",
                f"--key-file={key}",
                f"--socket={self.munge_socket}",
                f"--pid-file={self.base}/munge/munged.pid",
                f"--log-file={self.base}/log/munged.log",
                f"--seed-file={self.base}/munge/munged.seed",
                "--num-threads=2",
            ],
        )

        def munge_works():
            encoded = subprocess.run(
                [_which("munge"), "-n", f"--socket={self.munge_socket}"], capture_output=True, timeout=5
            )
            if encoded.returncode != 0:
                return False
            decoded = subprocess.run(
                [_which("unmunge"), f"--socket={self.munge_socket}"],
                input=encoded.stdout,
                capture_output=True,
                timeout=5,
            )
            return decoded.returncode == 0

        self._wait("munged", munge_works, 20, ("munged",))

    def _start_slurm(self) -> None:
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i"])
        self._wait(
            "slurmctld",
            lambda: (
                self.run("scontrol", "ping", check=False, timeout=5).returncode == 0
                and "UP" in self.run("scontrol", "ping", check=False, timeout=5).stdout
            ),
            60,
            ("slurmctld",),
        )
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", NODE])

        def node_idle():
            state = self.run("sinfo", "-h", "-n", NODE, "-o", "%T", check=False, timeout=5).stdout.strip()
            return state == "idle"

        self._wait(f"node {NODE} to be idle", node_idle, 60, ("slurmctld", "slurmd"))
        gres = self.run("sinfo", "-h", "-n", NODE, "-o", "%G").stdout.strip()
        if self.gpus and f"gpu:fake:{self.gpus}" not in gres:
            raise SlurmUnavailable(
                f"node {NODE} came up without its {self.gpus} fake GPUs (sinfo %G: {gres!r}): "
                f"{self._log_tail('slurmd')}"
            )

    # --- stop -----------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel the cluster's jobs, stop the daemons this object started (by PID), then end what is left of
        its jobs (processes carrying this cluster's SLURM_CONF). Safe to call twice."""
        if self.daemons.get("slurmctld") and self.daemons["slurmctld"].poll() is None:
            try:
                self.run("scancel", "--full", f"--partition={self.partition}", check=False, timeout=15)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    active = self.run(
                        "squeue",
                        "-h",
                        "-t",
                        "PENDING,RUNNING,COMPLETING,CONFIGURING,SUSPENDED",
                        "-o",
                        "%i",
                        check=False,
                        timeout=10,
                    ).stdout.strip()
                    if not active:
                        break
                    time.sleep(0.5)
            except (OSError, subprocess.SubprocessError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            process = self.daemons.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        conf = str(self.conf)
        _kill_all(
            _processes_marked(lambda env: env.get("SLURM_CONF") == conf and env.get(OWNER_VARIABLE) == self.owner)
        )
