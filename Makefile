# The two commands a user needs: `make run` and `make test`. Both set everything up themselves.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
KERNEL ?= debian-6.12
export COSIM_CACHE ?= $(HOME)/.cache/cosim
PYTEST_ARGS ?=

.PHONY: all setup setup-all run test unit e2e bench lint clean-runs mutants

all: run

$(VENV)/.stamp: pyproject.toml
	@bash scripts/host-packages.sh
	@echo "==> python venv ($(VENV))"
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip -q install --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
	@$(PY) -c 'import zmq, construct, pexpect, hypothesis, xdist' || { echo "venv set-up failed"; exit 1; }
	@touch $@

setup: $(VENV)/.stamp
	@$(PY) -m cosim setup --kernel $(KERNEL)

# Every kernel the end-to-end tests boot, built (or taken from cache) up front with progress.
setup-all: $(VENV)/.stamp
	@$(PY) -m cosim setup --kernel debian-6.12,debian-6.1,debian-7.2,debian-6.12-bin

# Boot the guest with the model and run the hitless suite, then the trace analysis.
run: $(VENV)/.stamp
	@$(PY) -m cosim run --kernel $(KERNEL) --tests all

# Every test, unit and end-to-end. pytest's exit 5 (nothing collected) is a failure here only
# when neither part collected anything. Both parts run on two pytest-xdist workers: a guest
# run keeps only about one of the two cores busy (QEMU's vCPUs and the model take turns), so
# two guest-booting tests at once use the machine; a kernel's shared suite run is made once
# for both workers (tests/conftest.py, suite_run). -v names each end-to-end test as it ends,
# and the slowest are listed at the end. E2E_ARGS goes to the end-to-end part only (`make bench
# --make-test` asks it for a JUnit XML file, to tell what bounds the suite's time).
E2E_WORKERS ?= 2
E2E_XDIST = -n $(E2E_WORKERS) -v
E2E_ARGS ?=

test: $(VENV)/.stamp setup-all
	@$(PY) -m pytest -ra -m "not e2e" -n 2 $(PYTEST_ARGS); u=$$?; \
	  $(PY) -m pytest -ra -m e2e $(E2E_XDIST) --durations=30 $(E2E_ARGS) $(PYTEST_ARGS); e=$$?; \
	  if [ $$u -eq 5 ] && [ $$e -eq 5 ]; then echo "make test: pytest collected no tests"; exit 1; fi; \
	  [ $$u -ne 5 ] || u=0; [ $$e -ne 5 ] || e=0; [ $$u -eq 0 ] || exit $$u; exit $$e

unit: $(VENV)/.stamp
	@$(PY) -m pytest -ra -m "not e2e" -n 2 $(PYTEST_ARGS)

e2e: $(VENV)/.stamp setup-all
	@$(PY) -m pytest -ra -m e2e $(E2E_XDIST) $(PYTEST_ARGS)

# The driver mutant catalogues (mutants/linux-6.12, mutants/linux-7.2) on Debian's 6.12 and 7.2
# sources: which mutants the trace analysis catches (docs/mutants.md). One incremental kernel
# build and guest run each. The 7.2 catalogue runs also when 6.12's missed a mutant; the target
# then fails with the worse exit code (1: a mutant missed, 2: bad input). Ctrl-C (130) stops both.
mutants: $(VENV)/.stamp
	@$(PY) -m cosim setup --kernel debian-6.12 >/dev/null
	@$(PY) -m cosim setup --kernel debian-7.2 >/dev/null
	@rc=0; \
	for k in debian-6.12 debian-7.2; do \
		$(PY) -m cosim mutate --kernel $$k; r=$$?; \
		[ $$r -ne 130 ] || exit 130; [ $$r -le $$rc ] || rc=$$r; \
	done; exit $$rc

bench: $(VENV)/.stamp
	@$(PY) bench/run.py

lint: $(VENV)/.stamp
	@$(VENV)/bin/ruff check cosim tests bench

clean-runs:
	rm -rf runs
