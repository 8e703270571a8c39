# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch pinned first, so that no other requirement picks its version. PyPI's Linux wheel brings its CUDA
	# libraries (~3.4 GB of nvidia-* packages); it runs on the CPU all the same, and the CPU-only index is not reachable.
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Main job end to end on built-in defaults: 0.1b seg at 1024x768 -> onnx-fp32, onnx-int8, tflite-fp32,
# tflite-int8 artifacts, validated against PyTorch, run on the bundled photo, benchmarked side by side
# with torch eager, report card in report-output/report.html.
demo: $(STAMP)
	$(BIN)/sapiens-edge report --output report-output --force

lint: $(STAMP)
	$(BIN)/ruff check .

# pytest includes tests/android_kit, which runs `mvn -q -B test` on android_demo/kit/pom.xml (the Kotlin kit's
# JUnit tests, against fixtures the Python side exports in the same run; JDK 17 + Maven needed), tests/ios_kit,
# which checks the Swift kit's golden-vector contract and names (its XCTests run on macOS in CI), and tests/pi, the
# runtime on aarch64 under qemu user emulation (qemu-user-static + debootstrap needed: .ci/run installs them).
# Two workers, a test file per worker (--dist loadfile: a file's module fixtures are built once): much of the
# suite is single-threaded Python (graph export, the quantizers, qemu, the JVM), so the 2-core CI machine runs
# two files at once. More workers would multiply the peak memory of the export tests.
test: $(STAMP) lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --require-targets --durations=15

clean:
	rm -rf $(VENV) build report-output .pytest_cache .ruff_cache
