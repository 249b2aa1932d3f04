# cloudxfer: common tasks. `make install && make demo` is the quick start.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= runs/demo
PROFILE ?= quick
SEEDS ?= 0,1,2
SIM_SEED ?= 0
# results/<table>/table.csv and .md, results/fig7.png, ...: the last table or figure made, of
# whichever profile made it (its header names the profile). The runs, data and shared source
# runs behind them live in one folder per profile, results/<profile>/ (STORE), so a smoke table
# never reuses or overwrites a quick table's runs (the table writer refuses to mix profiles).
RESULTS ?= results
STORE = $(RESULTS)/$(basename $(notdir $(PROFILE)))
SMOKE = $(filter smoke,$(PROFILE))
comma := ,
SIM_DATA = $(STORE)/data/sim$(SIM_SEED)
# Source-domain runs (source pre-training, SPL's restorer) read no target data: trained once,
# then copied by every table and Fig. 9 level of the same profile, source set and seed.
SHARED = $(STORE)/shared
# The tables simulate the sizes the simulator's regime was calibrated at (docs/simulator.md):
# 3,000 target pairs, 700 source images per class. The demo uses a smaller set, and the smoke
# profile (a wiring check, one epoch a stage) a tiny one.
TABLE_SIZES = $(if $(SMOKE),--pairs 300 --per-class 8,--pairs 3000 --per-class 700)
# MASKS=DIR pastes a folder of real cloud masks instead of simulated ones (SEN12MS tables).
MASKS ?=
PASTE = $(if $(MASKS),--data.init_args.clouds.masks_dir=$(abspath $(MASKS)))
# Fig. 9: percent of all tiles (train and test) clouded, one chain per level (smoke: two).
LEVELS ?= $(if $(SMOKE),50 100,10 20 30 40 50 60 70 80 90 100)
# ARGS: extra options for every `cloudxfer run` of the tables and figures, for example
# ARGS="--jobs 4" or ARGS="--jobs 6 --trainer.accelerator=gpu".
ARGS ?=

FIRST_SEED = $(firstword $(subst $(comma), ,$(SEEDS)))
# Copy a finished table (table.csv, table.md) from the profile's folder to results/<table>/.
publish = mkdir -p $(RESULTS)/$(1) && cp $(STORE)/$(1)/table.csv $(STORE)/$(1)/table.md \
	$(RESULTS)/$(1)/ && echo "copied to $(RESULTS)/$(1)/table.md and table.csv"

.PHONY: install test test-fast lint docs demo bench clean table1 table2 table3 table4 fig7 fig8 fig9

install:  ## create .venv and install cloudxfer with the dev tools
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[dev]"

test:  ## the default test suite (slow tests included; 30 minutes on 2 CPU cores in a fresh clone)
	$(BIN)/pytest -q

test-fast:  ## skip tests marked slow
	$(BIN)/pytest -q -m "not slow"

lint:  ## ruff + mypy
	$(BIN)/ruff check cloudxfer datamodules tests benchmarks
	$(BIN)/ruff format --check cloudxfer datamodules tests benchmarks
	$(BIN)/mypy cloudxfer datamodules

docs:  ## the documentation site in build/site (warnings are errors), the tutorial run in build/tutorial
	rm -rf build/tutorial
	CLOUDXFER_DOCS_EXECUTE=true CLOUDXFER_TUTORIAL_OUT=$(CURDIR)/build/tutorial NO_MKDOCS_2_WARNING=1 \
		$(BIN)/mkdocs build --strict

demo:  ## simulate the default data, run the whole chain, print the OA/AA/Kappa table
	$(BIN)/cloudxfer chain --profile $(PROFILE) --out $(OUT) --synth

table1:  ## Table I (NWPU role -> SEN12MS Cloud): every registered row, SEEDS, PROFILE, SIM_SEED
	$(BIN)/cloudxfer run --table table1 --profile $(PROFILE) --seeds $(subst $(comma), ,$(SEEDS)) \
		--out $(STORE)/table1 --share-dir $(SHARED) --synth --seed $(SIM_SEED) $(TABLE_SIZES) \
		--data-root $(SIM_DATA)/target --source-root $(SIM_DATA)/source $(PASTE) $(ARGS)
	$(call publish,table1)

table2:  ## Table II (AID role -> SEN12MS Cloud): as table1 with the AID-role source set
	$(BIN)/cloudxfer run --table table2 --profile $(PROFILE) --seeds $(subst $(comma), ,$(SEEDS)) \
		--out $(STORE)/table2 --share-dir $(SHARED) --synth --seed $(SIM_SEED) \
		--source-role aid $(TABLE_SIZES) --data-root $(SIM_DATA)/target \
		--source-root $(SIM_DATA)/source_aid $(PASTE) $(ARGS)
	$(call publish,table2)

table3:  ## Table III (NWPU role -> Hunan-style real-cloudy set): as table1 on experiments/cloudy_pairs
	$(BIN)/cloudxfer run --table table3 --dataset cloudy_pairs --profile $(PROFILE) \
		--seeds $(subst $(comma), ,$(SEEDS)) --out $(STORE)/table3 --share-dir $(SHARED) \
		--synth --seed $(SIM_SEED) $(TABLE_SIZES) --data-root $(SIM_DATA)/hunan \
		--source-root $(SIM_DATA)/source $(ARGS)
	$(call publish,table3)

table4:  ## Table IV (AID role -> Hunan-style real-cloudy set)
	$(BIN)/cloudxfer run --table table4 --dataset cloudy_pairs --profile $(PROFILE) \
		--seeds $(subst $(comma), ,$(SEEDS)) --out $(STORE)/table4 --share-dir $(SHARED) \
		--synth --seed $(SIM_SEED) --source-role aid $(TABLE_SIZES) --data-root $(SIM_DATA)/hunan \
		--source-root $(SIM_DATA)/source_aid $(ARGS)
	$(call publish,table4)

fig7: table1  ## Fig. 7: OA on cloudy vs clear tiles per Table I row; confusion matrices, recall
	$(BIN)/cloudxfer plot cloudy-clear $(STORE)/table1 --out $(RESULTS)/fig7.png
	$(BIN)/cloudxfer plot confusion $(STORE)/table1 --out $(RESULTS)/table1/confusion

fig8: table1  ## Fig. 8: F2's per-modality losses with and without IRM (first of SEEDS)
	$(BIN)/cloudxfer plot losses $(STORE)/table1/seed$(FIRST_SEED)/target \
		$(STORE)/table1/seed$(FIRST_SEED)/target_noirm \
		--labels "F2 with IRM" "F2 without IRM" --out $(RESULTS)/fig8.png

fig9:  ## Fig. 9: F2 with and without IRM against the share of clouded tiles (LEVELS, SEEDS)
	for L in $(LEVELS); do \
		$(BIN)/cloudxfer run --methods target target_noirm --profile $(PROFILE) \
			--seeds $(subst $(comma), ,$(SEEDS)) --out $(STORE)/fig9/cloud$$L \
			--share-dir $(SHARED) --synth --seed $(SIM_SEED) $(TABLE_SIZES) --data-root $(SIM_DATA)/target \
			--source-root $(SIM_DATA)/source $(PASTE) \
			--data.init_args.clouds.cloudy_share=$$(awk "BEGIN { print $$L / 100 }") $(ARGS) || exit 1; \
	done
	$(BIN)/cloudxfer plot cloud-sweep $(STORE)/fig9 --out $(RESULTS)/fig9.png

bench:  ## every performance ratio (RATIO lines, benchmarks/latest.json); about 3 minutes on 2 cores
	$(BIN)/python -m benchmarks.bench

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
