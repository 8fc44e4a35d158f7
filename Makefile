# Every target bootstraps .venv itself. torch is pinned to 2.13.0: on the project's
# machines that installs the local CPU build; an unpinned torch would pull CUDA wheels.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint test-slow bench clean-venv

$(STAMP): pyproject.toml plugins/structlearn-nas/pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[test,bench,lint]"
	$(BIN)/python -m pip install -q -e plugins/structlearn-nas
	$(BIN)/python -m pip install -q --no-deps "syne-tune==0.16.0"  # only its config-space JSON, for the NAS plugin's test (its deps are 1.2 GB)
	$(BIN)/python -m pip install -q "ray[tune]==2.60.0"  # Ray Tune's own API, for the NAS plugin's ray export test
	$(BIN)/python -m pip install -q --no-deps "timm==1.0.31"  # timm's model registry, for register_timm's test (timm's other modules need torchvision)
	touch $(STAMP)

demo: $(STAMP)  ## the main job: discovery on the bundled images (experiments/mosaic_sparse.yaml)
	$(BIN)/structlearn discover $(ARGS)

test: $(STAMP)  ## the default test suite (slow scientific runs excluded); installs headless Chromium for the report test
	./.ci/install-browser
	$(BIN)/python -m pytest -q $(ARGS)

lint: $(STAMP)  ## ruff (E, W, F, I) and mypy, settings in pyproject.toml: no warning allowed
	$(BIN)/ruff check structlearn tests experiments plugins
	$(BIN)/mypy

test-slow: $(STAMP)  ## the long scientific runs only
	$(BIN)/python -m pytest -q -m slow $(ARGS)

bench: $(STAMP)  ## side-by-side benchmarks (experiments/benchmarks)
	$(BIN)/structlearn bench --json bench.json $(ARGS)

clean-venv:
	rm -rf $(VENV)
