# Two commands a new user needs: `make demo` and `make test`. Each bootstraps .venv idempotently:
# a second run finds the stamp and skips straight to the job.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.fetalheart-installed
export PYTHONUNBUFFERED := 1

.PHONY: demo test lint env bootstrap clean-venv

$(STAMP): setup.cfg requirements.txt tools/install_detectron2.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -c requirements.txt -e '.[dev]'
	PYTHON=$(PY) bash tools/install_detectron2.sh
	$(PY) -c "import fetalheart._compat, detectron2.engine"  # shims first, as every module that imports detectron2
	@touch $(STAMP)

bootstrap: $(STAMP)

demo: $(STAMP)
	$(PY) tools/run_study.py --demo $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check fetalheart tools tests benchmarks

env: $(STAMP)
	$(PY) -m fetalheart.collect_env

clean-venv:
	rm -rf $(VENV)
