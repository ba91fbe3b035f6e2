# CNN Visualization Labs: the front door.
#   make setup     create .venv and install labhelpers with the tested versions (idempotent)
#   make test      unit tests + every notebook under nbval, offline, smoke profile
#   make reports   execute every lab with papermill and render HTML under reports/<profile>/
#   make student   write the student editions (solutions removed) into student/
#   make badges    rewrite the Colab badges and README lab table from pyproject's [tool.labs]
#   make pdf       print the HTML reports to PDF with a headless Chromium (when installed)
#   make lint      ruff over the package, tests and notebooks

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PROFILE ?= smoke
SEED    ?= 42
JOBS    ?= 1
STUDENT ?=
GROUP   ?=
LAB     ?=

export PYTHONUNBUFFERED := 1

.PHONY: setup test unit notebooks reports report student badges sync pdf lint lock clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	touch $@

# One pytest run, so CI reads one closing line: unit tests, then each notebook end to end.
test: setup
	LABS_PROFILE=smoke $(BIN)/python -m pytest tests notebooks \
	    --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider

unit: setup
	LABS_PROFILE=smoke $(BIN)/python -m pytest tests

notebooks: setup
	LABS_PROFILE=smoke $(BIN)/python -m pytest notebooks --nbval-lax --nbval-current-env --nbval-cell-timeout=900

reports: setup
	$(BIN)/python -m labhelpers.run --profile $(PROFILE) --seed $(SEED) -j $(JOBS) \
	    --student "$(STUDENT)" --group "$(GROUP)"

# make report LAB=04: one lab only
report: setup
	@test -n "$(LAB)" || { echo "usage: make report LAB=04"; exit 2; }
	$(BIN)/python -m labhelpers.run --profile $(PROFILE) --seed $(SEED) \
	    --student "$(STUDENT)" --group "$(GROUP)" notebooks/$(LAB)_*.ipynb

student: setup
	$(BIN)/python -m labhelpers.editions write

badges: setup
	$(BIN)/python -m labhelpers.colab

# after editing notebooks: shared setup cell, no outputs, fresh badges and student editions
sync: setup
	$(BIN)/python -m labhelpers.nbtools sync notebooks/*.ipynb
	$(BIN)/python -m labhelpers.colab
	$(BIN)/python -m labhelpers.editions write

pdf: setup
	$(BIN)/python -m labhelpers.pdf reports/$(PROFILE)

lint: setup
	$(BIN)/ruff check labhelpers tests scripts bench
	$(BIN)/nbqa ruff notebooks --ignore=E402,F821

lock: setup
	{ head -2 requirements.lock; $(BIN)/python -m pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf reports/smoke reports/full .pytest_cache
