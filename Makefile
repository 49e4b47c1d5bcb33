# algd — run `make help` for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
ENV     ?= PointButton
ARGS    ?=
LOGDIR  ?= logs
PYTEST_ARGS ?=
STAMP   := $(VENV)/.installed

.PHONY: help install train eval test test-slow test-gpu lint format tensorboard clean bench ablate report claim reproduce

help: ## Show this help
	@echo "algd — Augmented Lagrangian-Guided Diffusion for safe RL"
	@echo
	@echo "Usage: make <target> [ENV=<task>] [ARGS=\"<hydra overrides>\"]"
	@echo
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'
	@echo
	@echo "Examples:"
	@echo "  make train ENV=PointButton                       # paper protocol, defaults of configs/train.yaml"
	@echo "  make train ENV=toy ARGS=\"experiment=sac_lag seed=1\""
	@echo "  make train ENV=CarButton ARGS=\"protocol=standard total_frames=200000\""
	@echo "  make train ARGS=\"resume=logs/runs/PointButton/<run> total_frames=200000\"   # continue a run"
	@echo "  make ablate ABL=energy ENV=PointButton SEEDS=5 ARGS=\"experiment=paper_PointButton\""
	@echo "  make report SWEEP=logs/ablations/energy/PointButton/<time>"
	@echo "  make eval RUN=logs/runs/PointButton/<run> EPISODES=20 VIDEO=1       # evaluate its policy, write a video"

# The venv is (re)built when any install input changes; otherwise this is a no-op.
$(STAMP): pyproject.toml constraints.txt scripts/install.sh scripts/patch_safety_gymnasium.py
	@bash scripts/install.sh
	@touch $@

install: $(STAMP) ## Create/update .venv (pinned; safety-gymnasium installed and patched for Python 3.11)

# A resumed run keeps its own env unless ENV is given on the command line.
ENV_ARG = $(if $(and $(findstring resume=,$(ARGS)),$(filter file,$(origin ENV))),,env=$(ENV))

train: $(STAMP) ## Train: make train ENV=<task> ARGS="<hydra overrides>"; continue a run with ARGS="resume=<run dir>"
	@$(PY) -m algd.train $(ENV_ARG) $(ARGS)

RUN      ?=
EPISODES ?= 20
VIDEO    ?=
eval: $(STAMP) ## Evaluate a policy: make eval RUN=<run dir or checkpoint> EPISODES=20 [VIDEO=1] [ARGS="<overrides>"]
	@$(PY) -m algd.evaluate $(if $(RUN),"$(RUN)") --episodes $(EPISODES) $(if $(filter 1 true yes,$(VIDEO)),--video) $(ARGS)

calibrate: $(STAMP) ## The critics against a run's last training episodes: make calibrate RUN=<run dir> [EPISODES=10]
	@$(PY) -m algd.calibrate $(if $(RUN),"$(RUN)") $(if $(filter command line environment,$(origin EPISODES)),--episodes $(EPISODES))

test: $(STAMP) ## Run the test suite (unit, config, end-to-end incl. real Safety-Gymnasium); < 10 min on 2 cores
	@$(PY) -m pytest -m "not slow and not gpu" $(PYTEST_ARGS)

test-slow: $(STAMP) ## Run only the long tests (marked slow)
	@$(PY) -m pytest -m slow $(PYTEST_ARGS)

test-gpu: $(STAMP) ## Run the GPU tests (marked gpu: trainer=gpu training, resume, replay on the device); needs CUDA
	@$(PY) -m pytest -m gpu $(PYTEST_ARGS)

LINT_PATHS := src tests scripts
lint: $(STAMP) ## Lint and check formatting (ruff, pinned; configured in pyproject.toml); `make format` fixes both
	@$(VENV)/bin/ruff check $(LINT_PATHS)
	@$(VENV)/bin/ruff format --check $(LINT_PATHS)

format: $(STAMP) ## Apply ruff's fixes and formatting to the tree
	@$(VENV)/bin/ruff check --fix $(LINT_PATHS)
	@$(VENV)/bin/ruff format $(LINT_PATHS)

tensorboard: $(STAMP) ## Serve TensorBoard over all runs in logs/ (LOGDIR=... to choose)
	@$(VENV)/bin/tensorboard --logdir $(LOGDIR) --bind_all

clean: ## Remove the venv, caches and build artefacts (keeps logs/)
	rm -rf $(VENV) .pytest_cache build dist src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

BENCH_ARGS ?=
REF     ?=
bench: $(STAMP) ## Benchmarks (~8 min): learner updates/s per precision and population size, phases, FLOPs, collection, rendering, training fps; REF=<authors' checkout>
	@$(PY) -m algd.bench $(if $(REF),--ref "$(REF)") $(BENCH_ARGS)

# Sweep presets (configs/ablation/<ABL>.yaml) run in parallel with the joblib launcher; each job trains seeds
# 0..SEEDS-1 as one population (seeds=[0,...], one process, a run directory seed<s>/ per member) and gets
# trainer.threads = cores ÷ JOBS unless ARGS sets it.
ABL     ?=
SEEDS   ?= 3
JOBS    ?= $(shell nproc 2>/dev/null || echo 1)
comma   := ,
seed_list = [$(shell seq -s'$(comma)' 0 $$(($(1) - 1)))]
SWEEP_CMD = $(PY) -m algd.train -m hydra/launcher=joblib hydra.launcher.n_jobs=$(JOBS)
ablate: $(STAMP) ## Sweep preset: make ablate ABL=<actor|energy|rho|ensemble|mc_samples|baselines> ENV=<task> SEEDS=<n>
	@$(SWEEP_CMD) ablation=$(ABL) env=$(ENV) "seeds=$(call seed_list,$(SEEDS))" $(ARGS)

SWEEP   ?=
OUT     ?=
report: $(STAMP) ## Plots and table of a sweep across seeds: make report SWEEP=<sweep dir> [OUT=<dir>] (default <sweep>/report); ARCHIVE=<dir>: a compact copy of its runs instead
	@$(PY) -m algd.report $(SWEEP) $(if $(OUT),--out $(OUT)) $(if $(ARCHIVE),--archive $(ARCHIVE))

# The claim check: augmented vs plain Lagrangian energy with the diffusion actor on the toy task in its claim setting
# (configs/experiment/claim.yaml: critics calibrated before the end), CLAIM_SEEDS seeds each (one population per
# energy), sized for <= 20 min on 2 CPU cores (2 jobs at a time, 1 thread each); the report is written even if a job
# failed. CLAIM_ARGS: extra overrides (e.g. total_frames=...).
CLAIM_SEEDS ?= 5
CLAIM_ARGS  ?=
CLAIM_DIR   := $(LOGDIR)/claim/$(shell date +%Y-%m-%d_%H-%M-%S)
claim: $(STAMP) ## Claim check (<= 20 min on 2 cores): augmented vs plain Lagrangian energy, toy task, 5 seeds, + report
	@$(SWEEP_CMD) ablation=energy experiment=claim "seeds=$(call seed_list,$(CLAIM_SEEDS))" \
		hydra.sweep.dir=$(CLAIM_DIR) $(CLAIM_ARGS) $(ARGS); rc=$$?; \
		$(PY) -m algd.report $(CLAIM_DIR) && exit $$rc

# The paper's study for one task (algd.reproduce): ALGD, algd_reference, the plain-Lagrangian energy, SAC-Lag and
# CAL-like on experiment=paper_<TASK>, SEEDS seeds each as one population; prints an estimate first; the same command
# continues an interrupted study; ESTIMATE=1 only prints the estimate; JOBS: methods at a time (default 2 on a CPU).
TASK    ?=
METHODS ?=
reproduce: $(STAMP) ## The paper's study for one task: make reproduce TASK=<task> [SEEDS=5] [METHODS=a,b] [JOBS=2] [OUT=<dir>] [ESTIMATE=1] [ARGS=...]
	@$(PY) -m algd.reproduce $(TASK) --seeds $(if $(filter command environment,$(firstword $(origin SEEDS))),$(SEEDS),5) $(if $(METHODS),--methods $(METHODS)) \
		$(if $(filter command environment,$(firstword $(origin JOBS))),--jobs $(JOBS)) $(if $(OUT),--out $(OUT)) $(if $(ESTIMATE),--estimate-only) $(ARGS)
