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
SMOKE = $(filter smoke,$(PROFILE))
# SIZE=paper: any table or figure simulates the paper's 16,219 target pairs instead of the
# calibrated 3,000 (not the smoke profile), in a store of its own, results/<profile>-paper/, so
# its runs and data never meet those of the default size; the source set and the shared
# source-domain runs are the profile's, whatever the size.
SIZE ?=
$(if $(filter-out paper,$(SIZE)),$(error SIZE=$(SIZE): give SIZE=paper, or leave SIZE unset))
PAPER_SIZE = $(if $(SMOKE),,$(filter paper,$(SIZE)))
PROFILE_STORE = $(RESULTS)/$(basename $(notdir $(PROFILE)))
STORE = $(PROFILE_STORE)$(if $(PAPER_SIZE),-paper)
comma := ,
SIM_DATA = $(STORE)/data/sim$(SIM_SEED)
# Source-domain runs (source pre-training, SPL's restorer) read no target data: trained once,
# then copied by every table and Fig. 9 level of the same profile, source set and seed.
SHARED = $(PROFILE_STORE)/shared
# The tables simulate the sizes the simulator's regime was calibrated at (docs/simulator.md):
# 3,000 target pairs, 700 source images per class. The demo uses a smaller set, and the smoke
# profile (a wiring check, one epoch a stage) a tiny one; SIZE=paper the paper's 16,219 pairs.
PAPER_PAIRS = 16219
TABLE_SIZES = $(if $(SMOKE),--pairs 300 --per-class 8,--pairs $(if $(PAPER_SIZE),$(PAPER_PAIRS),3000) --per-class 700)
# MASKS=DIR pastes a folder of real cloud masks instead of simulated ones (SEN12MS tables).
MASKS ?=
# Real data (docs/real_data.md): DATASET=DATA.yaml, a data file `cloudxfer prepare` wrote, and
# SOURCE=DIR, a source image folder, replace the simulated target and source of a table.
DATASET ?=
SOURCE ?=
TARGET_DATA = $(if $(DATASET),--dataset $(abspath $(DATASET)),$(2) --data-root $(SIM_DATA)/$(1))
SOURCE_DATA = --source-root $(if $(SOURCE),$(abspath $(SOURCE)),$(PROFILE_STORE)/data/sim$(SIM_SEED)/$(1))
PASTE = $(if $(MASKS),--data.init_args.clouds.masks_dir=$(abspath $(MASKS)))
# Fig. 9: percent of all tiles (train and test) clouded, one chain per level (smoke: two).
LEVELS ?= $(if $(SMOKE),50 100,10 20 30 40 50 60 70 80 90 100)
# The unlabelled-pool figure (docs/method.md): F1 and F2 on nested pools of POOLS unlabelled
# training tiles of one simulated set of the paper's 16,219 pairs (smoke: 300), whose 11,497
# unlabelled tiles left after the held-out ones are the largest pool; one f_S for every size.
POOLS ?= $(if $(SMOKE),12 36,1000 3000 6000 11497)
POOL_STORE = $(PROFILE_STORE)$(if $(SMOKE),,-paper)
POOL_SIZES = $(if $(SMOKE),--pairs 300 --per-class 8,--pairs $(PAPER_PAIRS) --per-class 700)
POOLED = aux_opt aux_sar target target_noirm
POOL_RUN = $(BIN)/cloudxfer run --profile $(PROFILE) --seeds $(subst $(comma), ,$(SEEDS)) \
	--share-dir $(SHARED) --synth --seed $(SIM_SEED) $(POOL_SIZES) \
	--data-root $(POOL_STORE)/data/sim$(SIM_SEED)/target $(call SOURCE_DATA,source) $(PASTE)
# ARGS: extra options for every `cloudxfer run` of the tables and figures, for example
# ARGS="--jobs 4" or ARGS="--jobs 6 --trainer.accelerator=gpu".
ARGS ?=

FIRST_SEED = $(firstword $(subst $(comma), ,$(SEEDS)))
# Copy a finished table (table.csv, table.md) from the profile's folder to results/<table>/.
publish = mkdir -p $(RESULTS)/$(1) && cp $(STORE)/$(1)/table.csv $(STORE)/$(1)/table.md \
	$(RESULTS)/$(1)/ && echo "copied to $(RESULTS)/$(1)/table.md and table.csv"

.PHONY: install test test-fast lint docs demo bench clean table1 table1-scratch table1-selection \
	table2 table3 table4 fig7 fig8 fig9 fig-pool

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
		$(call TARGET_DATA,target) $(call SOURCE_DATA,source) $(PASTE) $(ARGS)
	$(call publish,table1)

table1-scratch:  ## Table I at the first seed with every network from scratch (--profile.init=scratch)
	$(BIN)/cloudxfer run --table table1 --profile $(PROFILE) --seeds $(FIRST_SEED) \
		--out $(STORE)/table1_scratch --share-dir $(SHARED) --synth --seed $(SIM_SEED) $(TABLE_SIZES) \
		$(call TARGET_DATA,target) $(call SOURCE_DATA,source) $(PASTE) \
		--profile.init=scratch $(ARGS)
	$(call publish,table1_scratch)

# The selection rule's sensitivity: f_S and F2 (with their upstream) handing on the epoch of the
# lowest held-out loss instead of the last, compared tile by tile with the table's runs.
arms = $(subst $(space),$(comma),$(foreach s,$(subst $(comma), ,$(SEEDS)),$(1)/seed$(s)/$(2)))
space := $(subst ,, )
table1-selection: table1  ## f_S and F2 under selection lowest_val beside Table I's (last), SEEDS
	$(BIN)/cloudxfer run --methods source_finetune target --profile $(PROFILE) \
		--seeds $(subst $(comma), ,$(SEEDS)) --out $(STORE)/table1_lowest_val --share-dir $(SHARED) \
		--synth --seed $(SIM_SEED) $(TABLE_SIZES) $(call TARGET_DATA,target) \
		$(call SOURCE_DATA,source) $(PASTE) --profile.selection=lowest_val $(ARGS)
	mkdir -p $(RESULTS)/table1
	$(BIN)/cloudxfer compare --pairs \
		$(call arms,$(STORE)/table1_lowest_val,source_finetune) $(call arms,$(STORE)/table1,source_finetune) \
		$(call arms,$(STORE)/table1_lowest_val,target) $(call arms,$(STORE)/table1,target) \
		--out $(RESULTS)/table1/selection_sensitivity.md

table2:  ## Table II (AID role -> SEN12MS Cloud): as table1 with the AID-role source set
	$(BIN)/cloudxfer run --table table2 --profile $(PROFILE) --seeds $(subst $(comma), ,$(SEEDS)) \
		--out $(STORE)/table2 --share-dir $(SHARED) --synth --seed $(SIM_SEED) \
		--source-role aid $(TABLE_SIZES) $(call TARGET_DATA,target) \
		$(call SOURCE_DATA,source_aid) $(PASTE) $(ARGS)
	$(call publish,table2)

table3:  ## Table III (NWPU role -> Hunan-style real-cloudy set): as table1 on experiments/cloudy_pairs
	$(BIN)/cloudxfer run --table table3 --profile $(PROFILE) \
		--seeds $(subst $(comma), ,$(SEEDS)) --out $(STORE)/table3 --share-dir $(SHARED) \
		--synth --seed $(SIM_SEED) $(TABLE_SIZES) \
		$(call TARGET_DATA,hunan,--dataset cloudy_pairs) \
		$(call SOURCE_DATA,source) $(ARGS)
	$(call publish,table3)

table4:  ## Table IV (AID role -> Hunan-style real-cloudy set)
	$(BIN)/cloudxfer run --table table4 --profile $(PROFILE) \
		--seeds $(subst $(comma), ,$(SEEDS)) --out $(STORE)/table4 --share-dir $(SHARED) \
		--synth --seed $(SIM_SEED) --source-role aid $(TABLE_SIZES) \
		$(call TARGET_DATA,hunan,--dataset cloudy_pairs) \
		$(call SOURCE_DATA,source_aid) $(ARGS)
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
			$(call SOURCE_DATA,source) $(PASTE) \
			--data.init_args.clouds.cloudy_share=$$(awk "BEGIN { print $$L / 100 }") $(ARGS) || exit 1; \
	done
	$(BIN)/cloudxfer plot cloud-sweep $(STORE)/fig9 --out $(RESULTS)/fig9.png

fig-pool:  ## OA of f_S, F1 and F2 against the unlabelled pool (POOLS, SEEDS); resumes where it stopped
	$(POOL_RUN) --methods source_finetune --out $(POOL_STORE)/fig_pool/reference $(ARGS)
	for N in $(POOLS); do \
		for S in $(subst $(comma), ,$(SEEDS)); do \
			ref=$(POOL_STORE)/fig_pool/reference/seed$$S/source_finetune; \
			dst=$(POOL_STORE)/fig_pool/pool$$N/seed$$S/source_finetune; \
			cmp -s $$ref/stage_done.json $$dst/stage_done.json || { rm -rf $$dst && \
				mkdir -p $$(dirname $$dst) && cp -R $$ref $$dst; } || exit 1; \
		done; \
		$(POOL_RUN) --methods source_finetune $(POOLED) --out $(POOL_STORE)/fig_pool/pool$$N \
			$(foreach m,$(POOLED),--stage.$(m).data.init_args.unlabelled_pool=$$N) $(ARGS) || exit 1; \
	done
	$(BIN)/cloudxfer plot pool $(POOL_STORE)/fig_pool --out $(RESULTS)/fig_pool.png

bench:  ## every performance ratio (RATIO lines, benchmarks/latest.json); about 3 minutes on 2 cores
	$(BIN)/python -m benchmarks.bench

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
