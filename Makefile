# The README's two commands: `make demo` and `make test`. Both set everything up first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := build/demo

.PHONY: demo test sysdeps bench code-sizes figures clean

sysdeps:
	@bash tools/sysdeps.sh

$(STAMP): pyproject.toml tools/sysdeps.sh
	@bash tools/sysdeps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,train,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/qetool search --board stm32f746 --iterations 20000 --seed 1 -o $(DEMO)/arch.json --history $(DEMO)/history.json --pareto $(DEMO)/pareto.json
	$(BIN)/qetool score $(DEMO)/arch.json --board stm32f746 --plot $(DEMO)/qbr.png
	$(BIN)/qetool compile $(DEMO)/arch.json --board stm32f746 --build -o $(DEMO)/build
	$(BIN)/qetool run $(DEMO)/build --emulator --check
	$(BIN)/qetool profile $(DEMO)/build --emulator -o $(DEMO)/build/profile.json
	$(BIN)/qetool report $(DEMO)/build --history $(DEMO)/history.json --pareto $(DEMO)/pareto.json -o $(DEMO)/report.html

test: $(STAMP)
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python bench/search_speed.py
	$(BIN)/python bench/search_vs_paper.py --plot build/pareto_paper.png
	$(BIN)/python bench/latency_accuracy.py
	$(BIN)/python bench/compare_int8.py
	$(BIN)/python bench/code_size.py
	$(BIN)/python bench/kernels_bits.py
	$(BIN)/python bench/vs_tflm.py
	$(BIN)/python bench/vs_cmsis_nn.py

code-sizes: $(STAMP)
	$(BIN)/python tools/code_sizes.py

# The README's QBR figure of the paper's network, at the paper's budget (the F412's 256 KB / 1 MB).
figures: $(STAMP)
	$(BIN)/qetool score examples/paper_256k_1m.json --board stm32f412 --plot docs/qbr_paper_256k_1m.png

clean:
	rm -rf build $(VENV)
