# Two commands on a fresh machine:  make demo  (run the series on the embedded digits data)
#                                   make test  (the whole test suite; CI runs exactly this)
# While editing:                    make test-fast  (the suite without the tests marked slow)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
RUN_DIR ?= outputs/demo
# The demo uses the short "demo" budget (a narrow ResNet-18, 12 epochs) so it takes minutes on a
# laptop CPU, and BadNets with the CPU-scale patch (5×5 checkerboard; the reference 2×2 patch is not
# learned at this budget). PARAMS come after and override it (e.g. PARAMS="-p profile cpu -p seed 1").
DEMO_PARAMS = -p profile demo -p attack_params "{'patch_size': 5, 'location': 'bottom_right', 'patch': 'checkerboard'}"
PARAMS  ?=

.PHONY: demo test test-fast install notebooks clean-demo

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) -m vablib run --run-dir $(RUN_DIR) $(DEMO_PARAMS) $(PARAMS)

test: $(VENV)/.installed
	$(PY) -m pytest -q --durations=15

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"

# Regenerate the .ipynb notebooks from their paired py:percent sources (after editing a .py).
notebooks: $(VENV)/.installed
	$(VENV)/bin/jupytext --sync notebooks/[0-9][0-9]_*.py notebooks/sweep_analysis.py

clean-demo:
	rm -rf $(RUN_DIR)
