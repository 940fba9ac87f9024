# Two commands a new user needs: `make demo` and `make test`. Each bootstraps .venv idempotently:
# a second run finds the stamp and skips straight to the job.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.fetalheart-installed
# The detectron2 shims for your own scripts in the venv (fetalheart/_startup.py): a .pth file, no first line needed.
SHIMS := $(VENV)/.fetalheart-shims
export PYTHONUNBUFFERED := 1

.PHONY: demo test lint env bootstrap clean-venv

$(STAMP): setup.cfg requirements.txt tools/install_detectron2.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -c requirements.txt -e '.[dev]'
	PYTHON=$(PY) bash tools/install_detectron2.sh
	$(PY) -c "import fetalheart._compat, detectron2.engine"  # shims first, as every module that imports detectron2
	@touch $(STAMP)

$(SHIMS): $(STAMP) fetalheart/_startup.py
	$(PY) -m fetalheart._startup
	@touch $(SHIMS)

bootstrap: $(SHIMS)

demo: $(SHIMS)
	$(PY) tools/run_study.py --demo $(ARGS)

test: $(SHIMS)
	$(PY) -m pytest $(ARGS)

lint: $(SHIMS)
	$(PY) -m ruff check fetalheart tools tests benchmarks

env: $(SHIMS)
	$(PY) -m fetalheart.collect_env

clean-venv:
	rm -rf $(VENV)
