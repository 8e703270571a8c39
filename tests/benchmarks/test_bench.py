"""`bench`: statistics on made-up timings, interleaved rounds on a fake clock, rows that cannot run,
interrupted runs, and the table / JSON / CSV / plot outputs (golden column sets)."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from sapiens_edge.benchmarks import accuracy as A
from sapiens_edge.benchmarks import bench as B
from sapiens_edge.benchmarks import bench_output as O
from sapiens_edge.benchmarks.stats import latency_stats, percentile

pytest.importorskip("onnxruntime")


def test_latency_stats_on_known_values():
    s = latency_stats([0.4, 0.1, 0.3, 0.2, 1.0])
    assert s["runs"] == 5 and s["min_s"] == 0.1 and s["max_s"] == 1.0
    assert s["mean_s"] == pytest.approx(0.4) and s["p50_s"] == pytest.approx(0.3)
    assert s["p90_s"] == pytest.approx(0.76)  # numpy's linear interpolation: 0.4 + 0.6 * 0.4
    assert s["p99_s"] == pytest.approx(0.976)
    assert s["std_s"] == pytest.approx(math.sqrt(0.5 / 4))  # sample std: squared deviations sum to 0.5
    assert s["throughput_per_s"] == pytest.approx(2.5)
    assert percentile([2.0], 99) == 2.0 and math.isnan(latency_stats([])["p50_s"])


class FakeClock:
    """Each configuration's run advances time by its own fixed duration."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory):
    """A tiny seg model exported with onnx-fp32 (fast), run for real by bench."""
    pytest.importorskip("torch")
    from sapiens_edge.export import core
    from tests.export.shared import tiny_model

    model = tiny_model("seg")
    path = tmp_path_factory.mktemp("bench") / "seg-fp32"
    core.export(model, "onnx-fp32", path, input_size=model.sapiens_info.input_hw, progress=lambda _: None)
    return path


def test_rounds_are_interleaved_and_timed_by_the_clock(monkeypatch, tmp_path):
    clock = FakeClock()
    order = []
    durations = {"A": 0.5, "B": 0.25}

    def fake_config(path, backend, options, clk, progress):
        row = B.BenchRow(name=path.name.upper(), artifact=str(path))

        def run():
            order.append(row.name)
            clock.now += durations[row.name]

        return B._Config(row, run)

    monkeypatch.setattr(B, "_artifact_config", fake_config)
    result = B.bench([tmp_path / "a", tmp_path / "b"], runs=3, warmup=2, clock=clock, json_path=tmp_path / "b.json")
    # warm-up: A first, A, B first, B; then rounds A B, A B, A B
    assert order == ["A", "A", "B", "B"] + ["A", "B"] * 3
    a, b = result.row("A"), result.row("B")
    assert a.first_s == 0.5 and a.times_s == [0.5] * 3 and b.stats["p50_s"] == 0.25
    assert result.baseline == "A" and b.speedup == pytest.approx(2.0) and a.speedup == pytest.approx(1.0)
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved["schema"] == "sapiens-edge.bench" and [r["name"] for r in saved["rows"]] == ["A", "B"]


def test_seconds_budget_stops_the_rounds(monkeypatch, tmp_path):
    clock = FakeClock()

    def fake_config(path, backend, options, clk, progress):
        row = B.BenchRow(name=path.name, artifact=str(path))
        return B._Config(row, lambda: setattr(clock, "now", clock.now + 1.0))

    monkeypatch.setattr(B, "_artifact_config", fake_config)
    result = B.bench([tmp_path / "x"], runs=None, seconds=3.5, clock=clock)
    assert result.row("x").stats["runs"] == 4  # rounds start at 0, 1, 2, 3 s < 3.5 s
    with pytest.raises(ValueError, match="exactly one"):
        B.bench([tmp_path / "x"], runs=3, seconds=1.0)


def test_broken_and_missing_artifacts_keep_their_rows(tiny_artifact, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_artifact, broken)
    (broken / "model.onnx").write_bytes(b"not a model")
    result = B.bench([tiny_artifact, broken, tmp_path / "missing"], runs=2, threads=1)
    ok, bad, missing = result.rows
    assert ok.status == "ok" and ok.stats["runs"] == 2 and ok.first_s > 0 and ok.load_s > 0 and ok.file_mib > 0
    assert bad.status == "failed" and "sha256" in bad.reason
    assert missing.status == "failed" and "not found" in missing.reason
    assert result.baseline == "onnx-fp32" and ok.speedup == pytest.approx(1.0)
    table = O.to_markdown(result)
    assert "FAILED: " in table and "| onnx-fp32 |" in table


def test_an_interrupted_run_keeps_its_rounds(monkeypatch, tmp_path):
    clock = FakeClock()
    calls = {"n": 0}

    def fake_config(path, backend, options, clk, progress):
        row = B.BenchRow(name=path.name, artifact=str(path))

        def run():
            calls["n"] += 1
            clock.now += 0.1
            if calls["n"] == 4:  # first + 2 rounds done, then Ctrl-C
                raise KeyboardInterrupt

        return B._Config(row, run)

    monkeypatch.setattr(B, "_artifact_config", fake_config)
    result = B.bench([tmp_path / "x"], runs=10, clock=clock, json_path=tmp_path / "partial.json")
    assert result.interrupted and result.row("x").stats["runs"] == 2
    saved = json.loads((tmp_path / "partial.json").read_text())
    assert saved["interrupted"] is True and saved["rows"][0]["stats"]["runs"] == 2


def _result_with_accuracy() -> B.BenchResult:
    rows = []
    for name, times, acc, gate in (("torch eager fp32", [8.0, 8.2], None, None), ("onnx-int8", [2.4, 2.6], 0.983,
                                   "PASSED"), ("tflite-int8-dynamic", [2.1, 2.2], 0.965, "FAILED"),
                                   ("onnx-fp32", [3.8, 3.9], 1.0, "PASSED")):
        row = B.BenchRow(name=name, artifact=None, times_s=times)
        if acc is not None:
            row.accuracy = {"metric": "pixel_agreement", "value": acc, "higher_is_better": True, "gate": gate}
        rows.append(row)
    rows.append(B.BenchRow(name="coreml-fp16", artifact=None, status="unavailable", reason="Core ML runs on Apple"))
    result = B.BenchResult(rows=rows, baseline=None, settings={"threads": 2, "warmup": 1, "runs": 2, "seconds": None},
                           system={"cpu": "Test CPU", "logical_cores": 2, "memory_gib": 24.0, "os": "Linux"})
    B._finish(result, None)
    return result


def test_outputs_schema_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    result = _result_with_accuracy()
    files = O.write_all(result, tmp_path)
    assert set(files) == {"json", "csv", "markdown", "latency", "accuracy"}
    rows = list(csv.DictReader(io.StringIO((tmp_path / "bench.csv").read_text())))
    assert tuple(rows[0]) == (  # golden: scripts read these columns
        "name", "status", "reason", "recipe", "backend", "file_mib", "load_s", "first_s", "runs", "mean_s", "p50_s",
        "p90_s", "p99_s", "std_s", "throughput_per_s", "speedup", "peak_rss_mib", "gpu_mem_mib", "accuracy_metric",
        "accuracy", "gate", "artifact", "placement", "input_hw")
    assert rows[4]["status"] == "unavailable" and "Apple" in rows[4]["reason"]
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["schema_version"] == 1 and doc["baseline"] == "torch eager fp32"
    assert set(doc["rows"][1]["stats"]) == {"runs", "mean_s", "p50_s", "p90_s", "p99_s", "std_s", "min_s", "max_s",
                                            "throughput_per_s"}
    md = (tmp_path / "bench.md").read_text()
    assert md.splitlines()[4].startswith("| config | p50 s | p90 s |") and "UNAVAILABLE: Core ML" in md
    for name in ("latency.png", "accuracy.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pareto_front():
    pts = [(2.2, 0.965), (2.5, 0.983), (3.9, 1.0), (3.0, 0.97), (2.6, 0.98)]
    assert O.pareto_front(pts, True) == [(2.2, 0.965), (2.5, 0.983), (3.9, 1.0)]
    assert O.pareto_front([(1.0, 0.5), (2.0, 0.3), (3.0, 0.4)], False) == [(1.0, 0.5), (2.0, 0.3)]


def test_system_info_has_the_basics():
    from sapiens_edge.benchmarks.sysinfo import describe, system_info

    info = system_info()
    assert info["logical_cores"] >= 1 and info["python"] and "numpy" in info["versions"]
    assert info["cpu"] in describe(info)


ZEN4_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 vaes
processor\t: 1
vendor_id\t: AuthenticAMD
cpu family\t: 25
"""

PI5_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU part\t: 0xd0b
"""


def test_cpu_features_identify_the_core_behind_a_masked_name():
    from sapiens_edge.benchmarks.sysinfo import cpu_features, describe

    zen4 = cpu_features(ZEN4_CPUINFO)
    assert zen4 == {"vendor": "AuthenticAMD", "family": "25", "model": "17",
                    "flags": ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]}
    pi5 = cpu_features(PI5_CPUINFO)
    assert pi5 == {"implementer": "0x41", "part": "0xd0b", "flags": ["asimddp", "asimdhp"]}
    line = describe({"cpu": "AMD EPYC", "cpu_features": zen4, "logical_cores": 2, "memory_gib": 24, "os": "Linux"})
    assert line.startswith("AMD EPYC (family 25 model 17) avx2+avx512f+avx512_vnni+avx512_bf16, 2 threads")
    assert cpu_features("") == {"flags": []}  # unreadable /proc/cpuinfo: nothing made up


def test_memory_is_measured_in_a_fresh_process(tiny_artifact):
    result = B.bench([tiny_artifact], runs=1, threads=1, memory=True)
    row = result.rows[0]
    assert row.status == "ok" and row.peak_rss_mib > 50  # Python + numpy + ONNX Runtime + the model
    assert row.gpu_mem_mib is None  # the CPU provider; no GPU figure is made up


def test_torch_cuda_row_without_cuda_says_why(tiny_artifact):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the row would run")
    result = B.bench([tiny_artifact], runs=1, threads=1, torch_baseline=("sapiens2-0.1b-seg", None),
                     torch_device="cuda")
    row = result.rows[0]
    assert row.name == "torch eager fp32 (cuda)" and row.status == "unavailable" and "CUDA" in row.reason
    assert result.baseline == "onnx-fp32"  # the first row that ran


def test_torch_cuda_row_waits_for_the_gpu_after_every_run(monkeypatch, tmp_path):
    """On a CUDA device kernels return before they finish: each timed run must end in a synchronize,
    else the row times the launch. The GPU is faked (a CPU torch claims CUDA); the timing code is real."""
    torch = pytest.importorskip("torch")
    import types

    import sapiens_edge.loading

    events = []

    class FakeNet:
        sapiens_info = types.SimpleNamespace(task="seg", input_hw=(64, 48))

        def to(self, device):
            events.append(f"model to {device}")
            return self

        def __call__(self, x):
            events.append("forward")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: events.append("sync"))
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: events.append(f"input to {a[0]}") or self)
    monkeypatch.setattr(sapiens_edge.loading, "load_model", lambda model, weights: FakeNet())
    result = B.bench([], runs=3, warmup=2, torch_baseline=("sapiens2-0.1b-seg", None), torch_device="cuda")
    row = result.rows[0]
    assert row.name == "torch eager fp32 (cuda)" and row.status == "ok" and row.stats["runs"] == 3
    assert events == ["model to cuda", "input to cuda"] + ["forward", "sync"] * 5  # first + 1 warm-up + 3 rounds


def test_validation_reports_attach_to_rows_of_their_own_provider(tmp_path):
    """An fp16 graph computes differently on each provider: a row takes the report made on its own."""
    art = tmp_path / "seg-fp16"
    art.mkdir()
    paths = []
    for provider, agreement in (("CPUExecutionProvider", 0.999), ("CUDAExecutionProvider", 0.991)):
        doc = {"recipe": "onnx-fp16", "task": "seg", "artifact": str(art), "passed": True, "fatal": None,
               "task_metrics": {"pixel_agreement": {"mean": agreement}},
               "backend_info": {"backend": "onnxruntime", "requested_provider": provider}}
        paths.append(tmp_path / f"{provider}.json")
        paths[-1].write_text(json.dumps(doc))
    reports = A.load_validation_reports(paths)

    def row(backend="onnxruntime"):
        return B.BenchRow(name="onnx-fp16", artifact=str(art), recipe="onnx-fp16", backend=backend)

    def match(r, reports, provider):
        return A.match_validation(reports, artifact=r.artifact, recipe=r.recipe, backend=r.backend, provider=provider)

    def agreement(report):
        return report["task_metrics"]["pixel_agreement"]["mean"] if report else None

    assert agreement(match(row(), reports, "cuda")) == 0.991
    assert agreement(match(row(), reports, "cpu")) == 0.999
    assert agreement(match(row(), reports, None)) == 0.999  # no provider named: the CPU's
    assert match(row(), reports, "tensorrt") is None  # never validated there: no accuracy shown
    cpu_only = A.load_validation_reports(paths[:1])
    assert match(row(), cpu_only, "cuda") is None


def test_two_exports_of_one_recipe_get_distinct_rows(tiny_artifact, tmp_path):
    import shutil

    other = tmp_path / "again"
    shutil.copytree(tiny_artifact, other)
    result = B.bench([tiny_artifact, other], runs=1, threads=1)
    assert [r.name for r in result.rows] == [f"onnx-fp32 [{tiny_artifact}]", f"onnx-fp32 [{other}]"]
    assert all(r.status == "ok" for r in result.rows)


@pytest.fixture(scope="module")
def small_artifact(tmp_path_factory):
    """The tiny seg model exported at 96x64, not its default 128x96 (as `export --input-size` does)."""
    pytest.importorskip("torch")
    from sapiens_edge.export import core
    from tests.export.shared import tiny_model

    path = tmp_path_factory.mktemp("bench-small") / "seg-96x64"
    core.export(tiny_model("seg"), "onnx-fp32", path, input_size=(96, 64), progress=lambda _: None)
    return path


def test_torch_row_runs_at_the_artifacts_input_size(monkeypatch, small_artifact, tmp_path, capsys):
    """Like for like: a model built for 1024x768 runs at the artifacts' 96x64, and every table and
    plot says so."""
    pytest.importorskip("matplotlib")
    pytest.importorskip("torch")
    import types

    import matplotlib.axes

    import sapiens_edge.loading

    shapes = []

    class FakeNet:
        sapiens_info = types.SimpleNamespace(task="seg", input_hw=(1024, 768))

        def to(self, device):
            return self

        def __call__(self, x):
            shapes.append(tuple(x.shape))

    monkeypatch.setattr(sapiens_edge.loading, "load_model", lambda model, weights: FakeNet())
    result = B.bench([small_artifact], runs=2, threads=1, torch_baseline=("sapiens2-0.1b-seg", None))
    torch_row, onnx_row = result.rows
    assert set(shapes) == {(1, 3, 96, 64)} and len(shapes) == 3  # first + 2 rounds
    assert torch_row.input_hw == onnx_row.input_hw == [96, 64] and result.settings["input_hw"] == [96, 64]
    assert "Batch 1, input 96x64," in O.to_markdown(result)
    rows = list(csv.DictReader(io.StringIO(O.to_csv(result))))
    assert [r["input_hw"] for r in rows] == ["96x64", "96x64"]
    rich_console = pytest.importorskip("rich.console")
    monkeypatch.setattr(rich_console.Console, "is_terminal", property(lambda self: True))  # the rich table
    monkeypatch.setenv("COLUMNS", "300")
    O.print_table(result)
    assert "sapiens-edge bench, input 96x64" in capsys.readouterr().out
    titles = []
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", lambda self, text, **kw: titles.append(text))
    O.write_plots(result, tmp_path)
    assert titles and all("input 96x64" in t for t in titles)


def test_artifacts_of_different_sizes_are_refused_before_anything_loads(monkeypatch, tmp_path):
    from sapiens_edge.errors import OptionError

    folders = []
    for name, hw in (("a", [256, 192]), ("b", [1024, 768])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps({"recipe": f"onnx-{name}", "input_hw": hw}))
        folders.append(tmp_path / name)
    monkeypatch.setattr(B, "_artifact_config", lambda *a: pytest.fail("an artifact was opened"))
    monkeypatch.setattr(B, "_torch_config", lambda *a, **k: pytest.fail("the torch model was loaded"))
    with pytest.raises(OptionError, match=r"different input sizes \(256x192: .*a; 1024x768: .*b\)"):
        B.bench(folders, runs=1, torch_baseline=("sapiens2-0.1b-seg", None))


def test_bench_output_is_never_overwritten_without_force(monkeypatch, tiny_artifact, tmp_path, capsys):
    """`bench -o DIR` refuses a folder holding a previous run's outputs before anything loads; with
    --force it removes them (a stale plot included) and leaves the folder's other files alone."""
    from sapiens_edge.cli import main
    from sapiens_edge.errors import OutputExistsError

    out = tmp_path / "b"
    out.mkdir()
    (out / "bench.md").write_text("previous run")
    (out / "accuracy.png").write_bytes(b"stale plot")
    (out / "notes.txt").write_text("the user's")
    args = ["bench", str(tiny_artifact), "--runs", "1", "--threads", "1", "--no-plots", "-o", str(out)]
    with monkeypatch.context() as m:
        m.setattr(B, "_artifact_config", lambda *a: pytest.fail("an artifact was opened"))
        assert main(args) == 2
    err = capsys.readouterr().err
    assert "already exist" in err and "--force" in err and "force=True" not in err
    assert (out / "bench.md").read_text() == "previous run" and (out / "accuracy.png").exists()
    assert main([*args, "--force"]) == 0
    assert "previous run" not in (out / "bench.md").read_text() and (out / "bench.json").is_file()
    assert not (out / "accuracy.png").exists() and (out / "notes.txt").read_text() == "the user's"
    with pytest.raises(OutputExistsError, match=r"force=True"):  # the API: json_path, force=
        B.bench([tiny_artifact], runs=1, json_path=out / "bench.json")
    B.bench([tiny_artifact], runs=1, threads=1, json_path=out / "bench.json", force=True)
