"""What `bench` records about the board, on made-up Jetson, Raspberry Pi and NVIDIA GPU machines: the
files and tools are faked, the parsing and the one-line description are real."""

from __future__ import annotations

import pytest

from sapiens_edge.benchmarks import runtime_memory, sysinfo

JETSON_FILES = {
    "/proc/device-tree/model": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00",
    "/etc/nv_tegra_release": "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
                             "DATE: Wed Jan  8 01:49:37 UTC 2025\n# KERNEL_VARIANT: oot\n",
    "/sys/class/thermal/thermal_zone0/temp": "48500",
}
JETSON_TOOLS = {"dpkg-query": "6.2+b77", "nvpmodel": "NV Power Mode: MAXN_SUPER\n2"}
PI_FILES = {"/proc/device-tree/model": "Raspberry Pi 5 Model B Rev 1.0\x00",
            "/sys/class/thermal/thermal_zone0/temp": "81250"}


def fake_machine(monkeypatch, files: dict[str, str], tools: dict[str, str]) -> None:
    monkeypatch.setattr(sysinfo, "_read", lambda path: files[path].strip("\x00\n ") if path in files else None)
    monkeypatch.setattr(sysinfo, "_run", lambda cmd: tools.get(cmd[0]))


def test_jetson_board_model_l4t_jetpack_and_power_mode(monkeypatch):
    fake_machine(monkeypatch, JETSON_FILES, JETSON_TOOLS)
    b = sysinfo.board()
    assert b == {"kind": "jetson", "model": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
                 "l4t": "36.4.3", "jetpack": "6.2+b77", "power_mode": "MAXN_SUPER (mode 2)", "temperature_c": 48.5}
    line = sysinfo.describe({"cpu": "ARMv8 Processor rev 1 (v8l)", "logical_cores": 6, "memory_gib": 7.4,
                             "os": "Linux", "board": b})
    assert line.startswith("NVIDIA Jetson Orin Nano") and "power MAXN_SUPER (mode 2)" in line
    assert "L4T 36.4.3 (JetPack 6.2+b77)" in line and "48 °C" in line


def test_jetson_without_the_tools_keeps_what_it_can_read(monkeypatch):
    fake_machine(monkeypatch, {"/etc/nv_tegra_release": "R35 something unexpected"}, {})
    assert sysinfo.board() == {"kind": "jetson", "model": None, "l4t": "R35 something unexpected",
                               "jetpack": None, "power_mode": None}


@pytest.mark.parametrize(("reply", "flags"), [
    ("throttled=0x0", []),
    ("throttled=0x50005", ["under-voltage now", "throttled now", "under-voltage since boot", "throttled since boot"]),
    ("throttled=0x80000", ["soft temperature limit since boot"]),
])
def test_raspberry_pi_throttling_is_decoded_and_shown(monkeypatch, reply, flags):
    fake_machine(monkeypatch, PI_FILES, {"vcgencmd": reply})
    b = sysinfo.board()
    assert b["kind"] == "raspberry-pi" and b["model"] == "Raspberry Pi 5 Model B Rev 1.0"
    assert b["throttled"] == reply.split("=")[1] and b["throttling"] == flags and b["temperature_c"] == 81.25
    line = sysinfo.describe({"cpu": "Cortex-A76", "logical_cores": 4, "memory_gib": 7.9, "os": "Linux", "board": b})
    assert ("THROTTLING: " + ", ".join(flags) in line) if flags else "THROTTLING" not in line


def test_unreadable_throttle_state_is_none_not_zero():
    assert sysinfo.throttling("throttled=garbage") is None


def test_desktop_has_no_board_section(monkeypatch):
    fake_machine(monkeypatch, {"/sys/class/thermal/thermal_zone0/temp": "40000"}, {})
    assert sysinfo.board() == {}


def test_nvidia_gpus_are_listed_from_nvidia_smi(monkeypatch):
    fake_machine(monkeypatch, {}, {"nvidia-smi": "NVIDIA H200, 143771 MiB, 570.124.06\nNVIDIA L4, 23034 MiB, 570.1"})
    assert sysinfo.gpus() == [{"name": "NVIDIA H200", "memory": "143771 MiB", "driver": "570.124.06"},
                              {"name": "NVIDIA L4", "memory": "23034 MiB", "driver": "570.1"}]
    fake_machine(monkeypatch, {}, {})
    assert sysinfo.gpus() == []  # no nvidia-smi: no GPU is claimed


def test_gpu_memory_is_this_process_row_of_nvidia_smi():
    smi = "4242, 1536\n999, 20000\n4242, 512\n77, [N/A]\n"
    assert runtime_memory.gpu_mib_of(4242, smi) == 2048.0  # two contexts of one process add up
    assert runtime_memory.gpu_mib_of(77, smi) is None  # the driver could not tell
    assert runtime_memory.gpu_mib_of(5, smi) is None and runtime_memory.gpu_mib_of(5, "") is None


def test_throttling_during_the_run_shows_in_the_device_line(monkeypatch, tmp_path):
    """The board is read again after the rounds: a Pi that heats up and throttles while the bench runs
    says so above the table, with the temperature before and after."""
    from sapiens_edge.benchmarks import bench as B
    from sapiens_edge.benchmarks import bench_output as O

    state = {"temp": "55000", "throttled": "throttled=0x0"}
    files = {"/proc/device-tree/model": "Raspberry Pi 5 Model B Rev 1.0"}
    monkeypatch.setattr(sysinfo, "_read", lambda path: state["temp"] if path.endswith("temp") else files.get(path))
    monkeypatch.setattr(sysinfo, "_run", lambda cmd: state["throttled"] if cmd[0] == "vcgencmd" else None)

    def run():
        state.update(temp="84500", throttled="throttled=0xe0008")  # soft limit now; since boot: capped, throttled

    monkeypatch.setattr(B, "_artifact_config", lambda path, *a: B._Config(B.BenchRow(name="x", artifact=None), run))
    result = B.bench([tmp_path / "x"], runs=2)
    assert result.system["board"]["throttling"] == [] and result.system["board_end"]["temperature_c"] == 84.5
    device = O.to_markdown(result).splitlines()[0]
    assert "55→84 °C" in device  # 84.5 rounds half to even
    assert device.endswith("THROTTLING: soft temperature limit now, frequency capped since boot, "
                           "throttled since boot, soft temperature limit since boot")
