"""An arm64 Debian root (bookworm, Python 3.11) that this x86 machine runs under qemu user emulation, with the
runtime's device extras installed as a Raspberry Pi gets them: aarch64 binary wheels only (no compiler), no torch.

Built once per key and cached under ~/.cache/sapiens-edge/aarch64/ (the key: the Debian packages, the runtime
wheel's requirements, the extras, the pinned versions and any injected requirement; another key rebuilds, and the
older roots are removed). Built in a scratch folder and renamed into place, so Ctrl-C or a failure leaves nothing
half-built. debootstrap only downloads the packages and `dpkg-deb -x` unpacks them: no maintainer script runs (they
would need the root's own dpkg under emulation, and nothing in them is needed to run Python). The project's wheel is
not in the root: each run installs the wheel under test beside it (`install_project`).

Run in the root with `python_command` (qemu-aarch64-static -L ROOT: the loader, the libraries and any absolute path
the program opens are looked up in ROOT first) and `clean_env`: nothing of the host's environment leaks in.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Sequence
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from sapiens_edge.scratch import make_scratch_dir, sweep_stale

SUITE = "bookworm"  # Raspberry Pi OS 12 is bookworm: the same glibc (2.36) and Python (3.11)
MIRROR = "http://deb.debian.org/debian"
DEBS = ("python3.11",)
PYTHON = "usr/bin/python3.11"
SITE = "usr/local/lib/python3.11/dist-packages"  # on Debian's sys.path
# Every wheel tag pip accepts on aarch64 with glibc 2.36, as pip on the Pi itself would.
PLATFORMS = ("manylinux2014_aarch64", *(f"manylinux_2_{n}_aarch64" for n in range(17, 37)))
EXTRAS = ("onnx-runtime", "tflite-runtime", "openvino-runtime")  # pyproject: the device extras of the Pi's engines
# Pinned to the host's versions, so that a difference the check finds comes from the architecture.
PINNED = ("numpy", "pillow", "onnxruntime", "ai-edge-litert", "openvino")
CPU = "cortex-a76"  # a Raspberry Pi 5's core: its instruction set selects the engines' kernels
# What the engines' CPU detection (pytorch/cpuinfo in ONNX Runtime) reads; qemu 7.2 shows the host's x86
# /proc/cpuinfo, on which ONNX Runtime's import crashes. Served from ROOT/proc/cpuinfo through -L.
CPUINFO = ("processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics "
           "fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
           "CPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\n")
# What OpenVINO's ARM kernels (oneDNN's xbyak_aarch64) read to identify the core: a Cortex-A76's MIDR_EL1.
MIDR = "0x00000000414fd0b1\n"
MIDR_PATH = "sys/devices/system/cpu/cpu{i}/regs/identification/midr_el1"
SCHEMA = 1  # bump when the way a root is built changes
TOOLS = {"qemu-aarch64-static": "qemu-user-static", "debootstrap": "debootstrap", "dpkg-deb": "dpkg"}
# Host pip settings kept (how to reach the index); the others (find-links, only-binary, user, ...) change what
# gets installed and are dropped.
PIP_NETWORK = {"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_CERT", "PIP_CLIENT_CERT", "PIP_PROXY",
               "PIP_DEFAULT_TIMEOUT", "PIP_RETRIES"}

Say = Callable[[str], None]


class EmulatorMissingError(RuntimeError):
    """qemu-user-static, debootstrap or dpkg-deb is not installed here."""


class Aarch64InstallError(RuntimeError):
    """The runtime's aarch64 install failed: a dependency without an aarch64 wheel, or a download that failed."""


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sapiens-edge" / "aarch64"


def check_tools() -> None:
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    missing = [pkg for tool, pkg in TOOLS.items() if shutil.which(tool, path=path) is None]
    if missing:
        raise EmulatorMissingError(f"the aarch64 check needs the Debian packages {', '.join(missing)}: "
                                   f"apt-get install -y {' '.join(missing)} (as root; .ci/run does it)")


def _tool(name: str) -> str:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])) or name


def pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON")) or k in PIP_NETWORK}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


# The check builds the root in a thread while it exports: on Ctrl-C or SIGTERM its main thread calls cancel(), which
# kills the thread's running process, so that the thread unwinds (and removes its scratch folder) at once.
_cancelled = threading.Event()
_running: set[subprocess.Popen] = set()


def call(cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float | None = None
         ) -> subprocess.CompletedProcess:
    """subprocess.run(cmd, capture_output=True, text=True), stopped by cancel()."""
    if _cancelled.is_set():
        raise KeyboardInterrupt("cancelled")
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        _running.add(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        finally:
            _running.discard(proc)
    if _cancelled.is_set():
        raise KeyboardInterrupt("cancelled")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def cancel() -> None:
    _cancelled.set()
    for proc in list(_running):
        proc.terminate()


def uncancel() -> None:
    """Before a new run in the same process (a cancelled one set the flag)."""
    _cancelled.clear()


def _pip(args: Sequence[str]) -> subprocess.CompletedProcess:
    return call([sys.executable, "-m", "pip", *args], env=pip_env())


def _target_args() -> list[str]:
    return ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
            *(a for p in PLATFORMS for a in ("--platform", p))]


def wheel_requirements(wheel: Path) -> list[str]:
    """The wheel's Requires-Dist lines (its dependencies and every extra's)."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(name).decode("utf-8"))
    return sorted(meta.get_all("Requires-Dist") or [])


def pins() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in PINNED]


def root_key(wheel: Path, extra_requirements: Sequence[str] = ()) -> str:
    spec = {"schema": SCHEMA, "suite": SUITE, "mirror": MIRROR, "debs": DEBS, "platforms": PLATFORMS,
            "extras": EXTRAS, "requires": wheel_requirements(wheel), "pins": pins(), "also": sorted(extra_requirements),
            "cpuinfo": CPUINFO, "midr": MIDR}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def download_wheels(wheel: Path, dest: Path, extra_requirements: Sequence[str] = ()) -> list[Path]:
    """Resolve `wheel[EXTRAS]` (plus `extra_requirements`) to aarch64 wheels in `dest`, as pip on the Pi would
    (binary wheels only, the host's versions of PINNED). A dependency with no aarch64 wheel raises
    Aarch64InstallError naming it."""
    dest.mkdir(parents=True, exist_ok=True)
    constraints = dest / "constraints.txt"
    constraints.write_text("\n".join(pins()) + "\n")
    out = _pip(["download", "--dest", str(dest), *_target_args(), "--constraint", str(constraints),
                f"{wheel}[{','.join(EXTRAS)}]", *extra_requirements])
    if out.returncode != 0:
        raise Aarch64InstallError(install_failure(out.stdout + out.stderr))
    return sorted(dest.glob("*.whl"))


def install_failure(pip_output: str) -> str:
    """What pip's failed aarch64 download means, naming the package when one has no aarch64 wheel."""
    tail = "\n".join(pip_output.strip().splitlines()[-6:])
    missing = re.findall(r"No matching distribution found for (\S+)", pip_output)
    if missing:
        return (f"{', '.join(missing)}: no aarch64 wheel for CPython 3.11 (manylinux, glibc <= 2.36), which the "
                f"runtime install on a Raspberry Pi (`pip install 'sapiens-edge[{','.join(EXTRAS)}]'`) needs: "
                f"pip there would try to build it from source or fail. Drop it from the runtime's dependencies "
                f"(pyproject.toml) or pin a version that ships an aarch64 wheel.\npip said:\n{tail}")
    return f"the aarch64 download of the runtime's dependencies failed (network? index?); pip said:\n{tail}"


def install_wheels(wheels: Sequence[Path], site: Path) -> None:
    out = _pip(["install", "--quiet", "--no-deps", "--no-warn-conflicts", "--target", str(site), *_target_args(),
                *map(str, wheels)])
    if out.returncode != 0:
        raise Aarch64InstallError(f"installing the aarch64 wheels failed:\n{(out.stdout + out.stderr)[-2000:]}")


def _run(cmd: Sequence[str], what: str) -> None:
    out = call(cmd)
    if out.returncode != 0:
        raise Aarch64InstallError(f"{what} failed ({' '.join(cmd[:3])} ...):\n{(out.stdout + out.stderr)[-2000:]}")


def _debian_root(root: Path) -> None:
    """Python 3.11 and its libraries (and Debian's minimal base) unpacked into `root`."""
    _run([_tool("debootstrap"), "--download-only", "--arch=arm64", "--variant=minbase", f"--include={','.join(DEBS)}",
          SUITE, str(root), MIRROR], f"downloading the arm64 Debian packages from {MIRROR}")
    archives = root / "var" / "cache" / "apt" / "archives"
    for deb in sorted(archives.glob("*.deb")):
        _run([_tool("dpkg-deb"), "-x", str(deb), str(root)], f"unpacking {deb.name}")
    shutil.rmtree(archives)
    shutil.rmtree(root / "debootstrap", ignore_errors=True)
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc" / "cpuinfo").write_text("".join(CPUINFO.format(i=i) for i in range(os.cpu_count() or 1)))
    for i in range(os.cpu_count() or 1):
        midr = root / MIDR_PATH.format(i=i)
        midr.parent.mkdir(parents=True, exist_ok=True)
        midr.write_text(MIDR)


def ensure_root(wheel: Path, *, cache: Path | None = None, extra_requirements: Sequence[str] = (),
                say: Say = print) -> Path:
    """The cached root for `wheel`'s requirements, built first if there is none (about 0.5 GB)."""
    check_tools()
    cache = cache or default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    sweep_stale(cache, say)
    key = root_key(wheel, extra_requirements)
    final = cache / key
    if (final / PYTHON).is_file():
        say(f"aarch64 root: cached {final}")
        return final
    say(f"aarch64 root: building {final} (Debian {SUITE} arm64 + aarch64 wheels)")
    work = make_scratch_dir(cache, f".{key}.tmp")
    try:
        wheels = [w for w in download_wheels(wheel, work / "wheels", extra_requirements)
                  if not w.name.startswith("sapiens_edge-")]  # the project's: installed per run
        say(f"aarch64 root: {len(wheels)} aarch64 wheels resolved: "
            + ", ".join(w.name.split("-")[0] + " " + w.name.split("-")[1] for w in wheels))
        _debian_root(work / "root")
        install_wheels(wheels, work / "root" / SITE)
        try:
            (work / "root").rename(final)
        except OSError:  # another run published the same key first: use theirs
            if not (final / PYTHON).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for old in cache.iterdir():  # one root at a time: each is about 0.5 GB
        if old.is_dir() and old.name != key and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)
    return final


def install_project(wheel: Path, site: Path) -> None:
    """The wheel under test, without its dependencies (the root has them), into `site`."""
    install_wheels([wheel], site)


def clean_env(home: Path, site: Path) -> dict[str, str]:
    """The whole environment of an emulated process: `site` (the project's wheel) on the path, nothing else."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "PYTHONPATH": str(site)}


def python_command(root: Path) -> list[str]:
    """The emulated interpreter: -s (no user site); PYTHON* variables come only from clean_env."""
    return [_tool("qemu-aarch64-static"), "-cpu", CPU, "-L", str(root), str(root / PYTHON), "-s"]
